"""The MACE calculator factory simulate uses: dtype, device, file errors, and physics of its outputs."""

import numpy as np
import pytest
import torch
from ase.build import bulk

from capml.errors import InputError
from capml.mlip.calculator import mace_calculator


def cell():
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((1, 1, 2))
    atoms.symbols[[1, 4]] = "Ag"
    atoms.rattle(0.05, seed=1)
    return atoms


def test_forces_and_stress_are_derivatives_of_the_energy(tiny_base):
    """Independent reference: central finite differences of the energy in positions and strain."""
    atoms = cell()
    atoms.calc = mace_calculator(tiny_base["model"], dtype="float64")
    h = 1e-4
    numeric = np.zeros(6)
    for k, (i, j) in enumerate([(0, 0), (1, 2), (2, 0)]):
        for sign in (1, -1):
            displaced = atoms.copy()
            displaced.calc = atoms.calc
            displaced.positions[i, j] += sign * h
            numeric[k] -= sign * displaced.get_potential_energy() / (2 * h)
    forces = atoms.get_forces()
    assert np.allclose(numeric[:3], [forces[0, 0], forces[1, 2], forces[2, 0]], atol=1e-6)

    # stress_xx = dE/de_xx / V for a homogeneous strain (ASE sign convention)
    energies = []
    for sign in (1, -1):
        strained = atoms.copy()
        strained.calc = atoms.calc
        strained.set_cell(strained.cell[:] @ np.diag([1 + sign * h, 1, 1]), scale_atoms=True)
        energies.append(strained.get_potential_energy())
    assert atoms.get_stress()[0] == pytest.approx((energies[0] - energies[1]) / (2 * h) / atoms.get_volume(), abs=1e-7)


def test_float32_matches_float64_to_single_precision(tiny_base):
    atoms = cell()
    results = {}
    for dtype in ("float64", "float32"):
        atoms.calc = mace_calculator(tiny_base["model"], dtype=dtype)
        results[dtype] = atoms.get_forces().copy()
        assert next(atoms.calc.models[0].parameters()).dtype == getattr(torch, dtype)
    assert np.allclose(results["float32"], results["float64"], atol=1e-4)


def test_bad_inputs_are_one_clear_error(tmp_path, tiny_base):
    with pytest.raises(InputError, match="not found"):
        mace_calculator(tmp_path / "missing.model")
    junk = tmp_path / "junk.model"
    junk.write_text("not a model")
    with pytest.raises(InputError, match="cannot load"):
        mace_calculator(junk)
    with pytest.raises(InputError, match="dtype"):
        mace_calculator(tiny_base["model"], dtype="float16")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA"):
            mace_calculator(tiny_base["model"], device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(tiny_base):
    atoms = cell()
    atoms.calc = mace_calculator(tiny_base["model"], device="cpu")
    cpu = atoms.get_forces().copy()
    atoms.calc = mace_calculator(tiny_base["model"], device="cuda")
    assert np.allclose(atoms.get_forces(), cpu, atol=1e-8)
