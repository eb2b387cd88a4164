"""Relaxation against an equation-of-state fit; the inequivalent-configuration stage and its resume."""

from __future__ import annotations

from math import comb

import json
from pathlib import Path
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.eos import EquationOfState
from ase.io import read

from capml.errors import InputError
from capml.simulate.configurations import RELAXED, relax_configurations
from capml.simulate.mlip import ase_calculator, batched_model
from capml.simulate.relax import relax
from capml.structures.system import compositions_from_x, load_system

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.mark.parametrize("relaxer", ["ase", "batched"])
def test_inequivalent_configurations_relaxed_ranked_and_resumed(mace_model_path, tmp_path, relaxer):
    system = load_system("ag3sbri")
    # batched: 2 at a time, so that the 4 decorations take two batches
    calc = ase_calculator(mace_model_path) if relaxer == "ase" else batched_model(mace_model_path, compute_stress=True)
    options = dict(fmax_eV_A=0.05, max_steps=3, relaxer=relaxer, batch_size=2)
    table = relax_configurations(system, [2, 8], calc, tmp_path, **options)
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
    table = relax_configurations(system, [2, 8, 7], calc, tmp_path, **options)
    assert len(read(tmp_path / RELAXED, ":")) == before + 1
    assert len(table) == 5


def test_batched_relaxer_gives_the_ase_relaxer_table(mace_model_path, tmp_path):
    """relaxer=batched against relaxer=ase on the same model: the same steps to the same minima, written as each
    finishes (in the order they converge, not the decorations' order)."""
    system = load_system("ag3sbri", supercell=(2, 1, 1))  # 10 atoms: decorations k = 0, 1, 2 take 35-38 steps
    options = dict(fmax_eV_A=0.005, max_steps=200)
    ase_table = relax_configurations(system, [0, 1, 2], ase_calculator(mace_model_path), tmp_path / "ase", **options)
    table = relax_configurations(system, [0, 1, 2], batched_model(mace_model_path, compute_stress=True),
                                 tmp_path / "batched", relaxer="batched", **options)
    assert ase_table["converged"].all() and table["converged"].all()
    assert list(table["config_id"]) == list(ase_table["config_id"])
    assert list(table["steps"]) == list(ase_table["steps"])
    np.testing.assert_allclose(table["energy_per_atom_eV"], ase_table["energy_per_atom_eV"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(table["volume_A3"], ase_table["volume_A3"], rtol=1e-8)
    written = [a.info["config_id"] for a in read(tmp_path / "batched" / RELAXED, ":")]
    assert written == list(table.sort_values("steps")["config_id"])


def test_batched_relaxer_settings_are_checked(mace_model_path, tmp_path):
    system, model = load_system("ag3sbri"), batched_model(mace_model_path, compute_stress=True)
    with pytest.raises(InputError, match="relaxer='batched' runs FIRE, not optimizer='BFGS'"):
        relax_configurations(system, [0], model, tmp_path, relaxer="batched", optimizer="BFGS")
    with pytest.raises(InputError, match="relaxer='fast': expected one of"):
        relax_configurations(system, [0], model, tmp_path, relaxer="fast")
    with pytest.raises(InputError, match="compute_stress=True"):
        relax_configurations(system, [0], batched_model(mace_model_path), tmp_path, relaxer="batched")


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


def test_configurations_stage_runs_the_batched_relaxer_from_the_config(mace_model_path, tmp_path):
    from capml.simulate.stages import run_stage

    from .conftest import simulate_config

    overrides = [f"simulate.mlip_model={mace_model_path}", "simulate.x=[0,1]", "simulate.configurations.max_steps=2",
                 "simulate.configurations.reference=relaxed",
                 "simulate.configurations.relaxer=batched", "simulate.configurations.batch_size=1"]
    run_stage(simulate_config(tmp_path, "stage=configurations", *overrides))
    frames = read(tmp_path / "configurations" / RELAXED, ":")
    assert sorted(a.info["config_id"] for a in frames) == ["k0of8_d0", "k8of8_d0"]
    assert all(a.info["steps"] == 2 for a in frames)
    with pytest.raises(InputError, match="simulate.configurations.relaxer=batched runs FIRE, not optimizer=BFGS"):
        run_stage(simulate_config(tmp_path / "bfgs", "stage=configurations", *overrides,
                                  "simulate.configurations.optimizer=BFGS"))


def test_a_rattled_start_leaves_the_cubic_saddle_point_of_an_unstable_end_member(tmp_path):
    """Cubic CsPbBr3 is harmonically unstable (GPAW phonons: imaginary Γ modes down to -1.98 THz,
    data/cspbbri/phonons/CsPbBr3), so a lower-energy distorted structure exists. From the ideal cell the forces vanish
    by symmetry and the relaxation stays on the saddle (0 steps); with ``rattle_A`` it falls below it. The rattle is
    seeded: a rerun gives the same start and the same minimum."""
    from capml.mlip.calculator import mace_calculator
    from capml.phonons import load_phonons

    frequencies_THz = load_phonons(ROOT / "data/cspbbri/phonons/CsPbBr3/phonopy.yaml").get_frequencies([0, 0, 0])
    assert frequencies_THz.min() < -1.0  # the independent reason a lower minimum must exist
    system = load_system("cspbbri")
    calc = mace_calculator(ROOT / "models/cspbbri/mace_finetuned.model")
    kwargs = dict(fmax_eV_A=0.05, max_steps=60, seed=0)
    ideal = relax_configurations(system, [24], calc, tmp_path / "ideal", **kwargs)
    rattled = relax_configurations(system, [24], calc, tmp_path / "rattled", rattle_A=0.05, **kwargs)
    for name in ("start0", "start1"):  # no steps: the relaxed file holds the rattled start
        relax_configurations(system, [24], calc, tmp_path / name, rattle_A=0.05, **{**kwargs, "max_steps": 0})
    starts = [read(tmp_path / name / RELAXED) for name in ("start0", "start1")]
    assert int(ideal["steps"].iloc[0]) == 0
    assert int(rattled["steps"].iloc[0]) > 0
    drop_meV_per_atom = 1000 * (ideal["energy_per_atom_eV"].iloc[0] - rattled["energy_per_atom_eV"].iloc[0])
    assert drop_meV_per_atom > 1.0
    np.testing.assert_array_equal(starts[0].positions, starts[1].positions)  # seeded: the same start twice
    shift_A = np.abs(starts[0].positions - system.end_member("Br").positions)
    assert 0 < shift_A.max() <= 0.05
    with pytest.raises(InputError, match="rattle_A=-0.1"):
        relax_configurations(system, [24], calc, tmp_path / "bad", rattle_A=-0.1, **kwargs)


def test_static_reference_keeps_the_ideal_sites_of_the_vegard_cell_and_is_not_mixed_with_relaxed(mace_model_path,
                                                                                                  tmp_path):
    """reference=static: the decorated Vegard cell itself (the paper's undistorted Eg(0) structure), with the model's
    energy there; an end member's forces vanish by symmetry (an independent check that nothing moved)."""
    system = load_system("ag3sbri")
    calc = ase_calculator(mace_model_path)
    table = relax_configurations(system, [0, 4], calc, tmp_path, fmax_eV_A=0.01, max_steps=50, reference="static")
    frames = {a.info["config_id"]: a for a in read(tmp_path / RELAXED, ":")}
    assert set(table["reference"]) == {"static"} and set(table["steps"]) == {0}
    for cid, atoms in frames.items():
        ideal = system.unrelaxed(atoms)
        np.testing.assert_allclose(atoms.positions, ideal.positions, atol=1e-12)
        np.testing.assert_allclose(atoms.cell[:], ideal.cell[:], atol=1e-12)
        assert atoms.info["reference"] == "static"
        check = atoms.copy()
        check.calc = calc
        assert atoms.info["energy_eV"] == pytest.approx(check.get_potential_energy(), abs=1e-8)
    end_member = table[table["n_occupied"] == 0].iloc[0]
    assert end_member["max_force_eV_A"] < 1e-6 and bool(end_member["converged"])
    with pytest.raises(InputError, match="reference=static, expected relaxed"):
        relax_configurations(system, [0, 4], calc, tmp_path, max_steps=1)
    with pytest.raises(InputError, match="rattle_A=0.05"):
        relax_configurations(system, [0], calc, tmp_path / "r", reference="static", rattle_A=0.05)
