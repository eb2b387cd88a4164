"""The batched relaxer (relax_batch) against ASE's FIRE on a FrechetCellFilter on the same MACE model: the same
steps, the same minima, the convergence test recomputed with ASE's own filter, and a system that converged first
left where it stopped."""

from __future__ import annotations

import numpy as np
import pytest
from ase.filters import FrechetCellFilter

from capml.errors import InputError
from capml.simulate.mlip import ase_calculator, batched_model
from capml.simulate.relax import relax, relax_batch
from capml.structures.system import load_system

FMAX_eV_A = 0.005
MAX_STEPS = 200


def starts(compositions=(0, 1, 2), rattle_A=0.1):
    """10-atom Ag3SBr(x)I(1-x) cells (2x1x1, shorter than the model's cutoff across), rattled, tagged in info.
    With the small test MACE they take 96, 75 and 38 FIRE steps to 0.005 eV/Å."""
    system = load_system("ag3sbri", supercell=(2, 1, 1))
    cells = []
    for k in compositions:
        atoms = system.build(system.decorations(k)[0])
        atoms.rattle(rattle_A, seed=k)
        atoms.info["tag"] = f"start{k}"
        cells.append(atoms)
    return cells


@pytest.fixture(scope="module")
def model(mace_model_path):
    return batched_model(mace_model_path, compute_stress=True)


@pytest.fixture(scope="module")
def calculator(mace_model_path):
    return ase_calculator(mace_model_path)


def filter_max_force(start, relaxed, calculator, pressure_GPa=0.0) -> float:
    """ASE's convergence measure at ``relaxed``: the largest row of a FrechetCellFilter's forces whose reference
    cell is the start's (atoms' forces times F, cell forces from the Fréchet derivative)."""
    from ase import units

    work = start.copy()
    work.calc = calculator
    cell_filter = FrechetCellFilter(work, scalar_pressure=pressure_GPa * units.GPa)
    work.set_cell(relaxed.cell, scale_atoms=False)
    work.positions = relaxed.positions
    return float(np.linalg.norm(cell_filter.get_forces(), axis=1).max())


def test_batched_relaxation_takes_ase_fire_steps_to_the_same_minima(model, calculator):
    structures = starts()
    reference = [relax(a, calculator, FMAX_eV_A, MAX_STEPS, "FIRE") for a in structures]
    batched = relax_batch(structures, model, FMAX_eV_A, MAX_STEPS)
    for start, ase_result, result in zip(structures, reference, batched):
        assert ase_result.converged and result.converged
        assert result.steps == ase_result.steps  # the same algorithm, step for step
        # measured here: energies to 1e-13 eV/atom, positions and cells to 1e-9 Å (the rounding of the batched model
        # call, grown over ~100 steps); on 40-atom cells (52-125 steps) the same
        assert result.energy_eV / len(start) == pytest.approx(ase_result.energy_eV / len(start), abs=1e-8)
        np.testing.assert_allclose(result.atoms.positions, ase_result.atoms.positions, atol=1e-6)
        np.testing.assert_allclose(result.atoms.cell.array, ase_result.atoms.cell.array, atol=1e-6)
        assert result.max_stress_eV_A3 == pytest.approx(ase_result.max_stress_eV_A3, abs=1e-8)
        # recomputed independently with the ASE calculator: forces and ASE's own filter criterion below fmax
        atoms = result.atoms.copy()
        atoms.calc = calculator
        forces = np.linalg.norm(atoms.get_forces(), axis=1).max()
        assert forces < FMAX_eV_A and forces == pytest.approx(result.max_force_eV_A, abs=1e-8)
        assert atoms.get_potential_energy() == pytest.approx(result.energy_eV, abs=1e-8)
        assert filter_max_force(start, result.atoms, calculator) < FMAX_eV_A
        # a copy of the input: atom order, info, no calculator
        assert result.atoms.calc is None
        assert list(result.atoms.numbers) == list(start.numbers)
        assert result.atoms.info == start.info


def test_a_system_that_converged_first_is_left_where_it_stopped(model):
    """Near-minimum and far-from-minimum cells in one batch: the quick one leaves the batch at its own step count
    and its result is exactly that of relaxing it alone; the slow one carries on."""
    near_minimum = relax_batch(starts((2,)), model, 0.05, MAX_STEPS)[0].atoms
    near_minimum.rattle(0.01, seed=1)
    slow_start = starts((0,))[0]
    alone = relax_batch([near_minimum], model, FMAX_eV_A, MAX_STEPS)[0]
    finished = []
    together = relax_batch([slow_start, near_minimum], model, FMAX_eV_A, MAX_STEPS,
                           on_done=lambda i, result: finished.append(i))
    assert 0 < together[1].steps == alone.steps < together[0].steps
    assert finished == [1, 0]  # reported as each one finishes
    np.testing.assert_allclose(together[1].atoms.positions, alone.atoms.positions, atol=1e-9)
    np.testing.assert_allclose(together[1].atoms.cell.array, alone.atoms.cell.array, atol=1e-9)
    assert together[1].energy_eV == pytest.approx(alone.energy_eV, abs=1e-9)


def test_unconverged_systems_stop_at_max_steps_and_converged_ones_take_no_step(model):
    structures = starts((0, 2))
    few = relax_batch(structures, model, FMAX_eV_A, max_steps=3)
    assert [r.steps for r in few] == [3, 3] and not any(r.converged for r in few)
    loose = relax_batch(structures, model, fmax_eV_A=1e3, max_steps=10)
    assert [r.steps for r in loose] == [0, 0] and all(r.converged for r in loose)
    np.testing.assert_array_equal(loose[1].atoms.positions, structures[1].positions)


def test_pressure_enters_like_ase_scalar_pressure(model, calculator):
    """0.05 GPa: the untrained test MACE is soft, the relaxed cell has 256 Å³ instead of 356 Å³ at zero pressure."""
    start = starts((2,))[0]
    ase_result = relax(start, calculator, FMAX_eV_A, MAX_STEPS, "FIRE", pressure_GPa=0.05)
    result = relax_batch([start], model, FMAX_eV_A, MAX_STEPS, pressure_GPa=0.05)[0]
    assert result.converged and result.steps == ase_result.steps
    assert result.atoms.get_volume() == pytest.approx(ase_result.atoms.get_volume(), abs=1e-6)
    assert result.atoms.get_volume() < 0.8 * relax_batch([start], model, FMAX_eV_A, MAX_STEPS)[0].atoms.get_volume()
    assert filter_max_force(start, result.atoms, calculator, pressure_GPa=0.05) < FMAX_eV_A


def test_relax_batch_needs_stress(mace_model_path):
    with pytest.raises(InputError, match="compute_stress=True"):
        relax_batch(starts((0,)), batched_model(mace_model_path), FMAX_eV_A, 5)
