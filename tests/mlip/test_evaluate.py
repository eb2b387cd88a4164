"""Evaluation: test-split errors against mace's own error table, phonon MAE against analytic scaling."""

import re

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.mixing import LinearCombinationCalculator
from phonopy import Phonopy

from capml.io.contract import read_dataset
from capml.mlip.evaluate import model_phonons, phonon_errors, split_errors
from capml.phonons import to_phonopy_atoms


def mace_test_table(log_text):
    """MAE E (meV/atom), MAE F (meV/Å), MAE stress (meV/Å³) from mace's final TEST table."""
    table = log_text.split("Error-table on TEST")[-1]
    row = next(line for line in table.splitlines() if line.startswith("|") and "Default" in line)
    return [float(v) for v in re.findall(r"[-\d.]+", row.split("|", 2)[2])[:4]]


def test_batched_errors_agree_with_mace_error_table(tiny_base):
    """Independent reference: the error table mace's trainer writes for the same model and test file."""
    run_dir = tiny_base["model"].rsplit("/mace/", 1)[0]
    frames = read_dataset(f"{run_dir}/splits/test.extxyz")
    metrics, _ = split_errors(tiny_base["model"], frames, batch_size=4)
    log_text = open(f"{run_dir}/mace/mace_stdout.log").read()
    mae_e, mae_f, _, mae_s = mace_test_table(log_text)
    assert metrics["energy"]["mae"] == pytest.approx(mae_e, abs=0.06)
    assert metrics["forces"]["mae"] == pytest.approx(mae_f, abs=0.06)
    assert metrics["stress"]["mae"] == pytest.approx(mae_s * 0.1602177, rel=0.02, abs=1e-3)  # meV/Å³ -> GPa


def reference_phonons():
    """EMT fcc Cu force constants straight from phonopy (not through capml)."""
    unit = bulk("Cu", "fcc", a=3.61)
    phonon = Phonopy(to_phonopy_atoms(unit), supercell_matrix=np.diag([3, 3, 3]), primitive_matrix="auto")
    phonon.generate_displacements(distance=0.01)
    forces = []
    for cell in phonon.supercells_with_displacements:
        atoms = Atoms(cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True)
        atoms.calc = EMT()
        forces.append(atoms.get_forces())
    phonon.forces = forces
    phonon.produce_force_constants()
    return phonon


def test_phonon_mae_zero_for_same_potential_and_analytic_for_scaled_forces():
    """Forces x4 -> force constants x4 -> frequencies x2, so the MAE equals the mean |frequency| of the reference."""
    reference = reference_phonons()
    models = {
        "same": model_phonons(reference, EMT()),
        "stiff": model_phonons(reference, lambda atoms: LinearCombinationCalculator([EMT()], [4.0])),
    }
    errors, curves = phonon_errors(reference, models, n_points=11)
    assert errors["same"]["band_mae_THz"] < 1e-3
    assert errors["stiff"]["band_mae_THz"] == pytest.approx(np.mean(np.abs(curves["reference"])), rel=1e-3)
    assert errors["stiff"]["gamma_mae_THz"] == pytest.approx(0.0, abs=1e-2)  # only acoustic modes at Γ
    assert max(errors["reference_gamma_THz"]) < 0.05 and curves["reference"].max() > 5.0  # Cu: ~7 THz max
