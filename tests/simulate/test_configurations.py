"""Relaxation against an equation-of-state fit; the inequivalent-configuration stage and its resume."""

from __future__ import annotations

from math import comb

import json
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.eos import EquationOfState
from ase.io import read

from capml.errors import InputError
from capml.simulate.configurations import RELAXED, relax_configurations
from capml.simulate.mlip import ase_calculator
from capml.simulate.relax import relax
from capml.structures.system import compositions_from_x, load_system


def test_cell_and_positions_relax_to_the_eos_minimum():
    start = bulk("Cu", "fcc", a=3.75, cubic=True)
    start.positions[0] += [0.05, -0.03, 0.02]
    result = relax(start, EMT(), fmax_eV_A=1e-4, max_steps=400, optimizer="FIRE")
    assert result.converged and result.max_force_eV_A < 1e-4

    # independent reference: Birch-Murnaghan fit of E(V) for the ideal cubic cell
    volumes, energies = [], []
    for a in np.linspace(3.52, 3.66, 9):
        atoms = bulk("Cu", "fcc", a=a, cubic=True)
        atoms.calc = EMT()
        volumes.append(atoms.get_volume())
        energies.append(atoms.get_potential_energy())
    v0, e0, _ = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
    assert result.atoms.get_volume() == pytest.approx(v0, rel=1e-3)
    assert result.energy_eV == pytest.approx(e0, abs=1e-4)
    np.testing.assert_allclose(result.atoms.cell.angles(), 90, atol=1e-3)


def test_compositions_from_x():
    assert compositions_from_x([0, 0.5, 1.0, 0.5], 8) == [0, 4, 8]
    assert compositions_from_x(0.25, 8) == [2]
    with pytest.raises(InputError, match="simulate.x=0.3: expected a fraction k/8"):
        compositions_from_x([0.3], 8)


def test_inequivalent_configurations_relaxed_ranked_and_resumed(mace_model_path, tmp_path):
    system = load_system("ag3sbri")
    calc = ase_calculator(mace_model_path)
    table = relax_configurations(system, [2, 8], calc, tmp_path, fmax_eV_A=0.05, max_steps=3)
    assert len(table) == 3 + 1
    k2 = table[table["n_occupied"] == 2]
    assert k2["multiplicity"].sum() == comb(8, 2)
    assert sorted(k2["rank"]) == [0, 1, 2]
    assert (k2.sort_values("rank")["energy_eV"].diff().dropna() >= 0).all()
    assert table.loc[table["rank"] == 0, "above_lowest_meV_per_atom"].abs().max() == 0
    count = json.loads((tmp_path / "relaxation_count.json").read_text())
    assert count == {"compositions": [2, 8], "relaxations_inequivalent": 4,
                     "relaxations_all_arrangements": comb(8, 2) + 1}
    assert (tmp_path / "energies.png").stat().st_size > 0

    # a rerun with one more composition relaxes only the new decorations
    before = len(read(tmp_path / RELAXED, ":"))
    table = relax_configurations(system, [2, 8, 7], calc, tmp_path, fmax_eV_A=0.05, max_steps=3)
    assert len(read(tmp_path / RELAXED, ":")) == before + 1
    assert len(table) == 5


def test_relaxed_volume_is_compared_with_the_starting_cell(mace_model_path, tmp_path, caplog):
    """volume_change_percent against the Vegard cell the system builds (computed here from the decoration), and a
    warning when it exceeds volume_warning_percent (the MLIP swelling a cell outside its training data)."""
    system = load_system("ag3sbri")
    with caplog.at_level("WARNING", logger="capml.simulate"):
        table = relax_configurations(system, [0], ase_calculator(mace_model_path), tmp_path, fmax_eV_A=0.01,
                                     max_steps=20, volume_warning_percent=1e-6)
    relaxed = read(tmp_path / RELAXED, ":")[0]
    start = system.build(system.decorations(0)[0])
    expected = 100 * (relaxed.get_volume() / start.get_volume() - 1)
    assert abs(expected) > 1e-6  # the small test MACE moves the cell
    assert table["volume_change_percent"].iloc[0] == pytest.approx(expected, rel=1e-9)
    assert "changed volume by more than" in caplog.text and "k0of8_d0" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="capml.simulate"):
        relax_configurations(system, [0], ase_calculator(mace_model_path), tmp_path, volume_warning_percent=50)
    assert "changed volume" not in caplog.text


def test_full_2x2x2_needs_22_relaxations_not_254():
    system = load_system("ag3sbri")
    counts = [len(system.decorations(k)) for k in range(9)]
    assert sum(counts) == 22
    assert sum(comb(8, k) for k in range(1, 8)) == 254  # the seed's relaxations (k = 1..7)
    assert sum(counts[1:8]) == 20
