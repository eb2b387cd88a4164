"""The bundled GPAW dataset (data/ag3sbri) against the contract: keys, units, settings, counts, no NaN."""

from __future__ import annotations

import re

import numpy as np
import phonopy
import pytest
from ase.units import GPa

from capml.cli import ROOT
from capml.io.contract import read_dataset, read_settings
from capml.io.extxyz import read_failures, read_structures

DATA = ROOT / "data" / "ag3sbri"
DATASET = DATA / "dataset.extxyz"
HSE_STRIDE = 3  # conf/labels/gpaw.yaml subsets.hse06: structure i of structures.extxyz gets it when i % 3 == 0


@pytest.fixture(scope="module")
def frames():
    # read_dataset validates the contract: required keys, shapes, finite values of every label it reads
    return read_dataset(DATASET, require=["REF_energy", "REF_forces", "REF_stress"], gaps=["pbesol"])


@pytest.fixture(scope="module")
def structures():
    return read_structures(DATA / "structures.extxyz")


def test_settings_are_the_ones_the_issue_fixes():
    fidelities = read_settings(DATASET).fidelities
    for name, xc in (("pbesol", "PBEsol"), ("hse06", "HSE06")):
        s = fidelities[name]
        assert (s["code"], s["mode"], s["xc"], s["ecut_eV"]) == ("gpaw", "pw", xc, 350.0)
        assert s["kpts"] == {"gamma": True, "size": [1, 1, 1]}
        assert s["smearing"] == {"type": "fermi-dirac", "width_eV": 0.01}
        assert "gpaw dataset -f PBEsol" in s["setups"]
    assert fidelities["REF"] == {**fidelities["pbesol"], "fidelity": "pbesol"}  # REF_ keys are PBEsol
    # the new GPAW code's hybrid gaps depend on how k-points are folded (tests/labels/test_backends.py)
    assert fidelities["hse06"]["implementation"] == "legacy GPAW calculator (gpaw.old)"


def test_units_and_ranges(frames):
    from capml.io.report import close_contacts

    close = set(close_contacts(frames, threshold_A=2.0)["structure_id"])
    for atoms in frames:
        assert len(atoms) == 40 and atoms.get_chemical_formula().startswith("Ag24")
        # GPAW energies are relative to its reference atoms: a few eV per atom, negative for a bound solid
        assert -4.0 < atoms.info["REF_energy"] / len(atoms) < -2.0
        # eV/Å (Ha/Bohr would be 51x larger). Hot phonon samples of the unstable cubic cells can bring two atoms
        # within 2 Å (the card lists them), and only those carry forces above 20 eV/Å
        max_force = np.abs(atoms.arrays["REF_forces"]).max()
        assert max_force < 50.0 and (max_force < 20.0 or atoms.info["structure_id"] in close)
        stress = atoms.info["REF_stress"]
        assert np.allclose(stress, stress.T) and np.abs(stress).max() < 20 * GPa  # eV/Å^3
        assert 0.0 <= atoms.info["gap_pbesol"] < 3.0
        if "gap_hse06" in atoms.info:
            assert np.isfinite(atoms.info["gap_hse06"]) and atoms.info["gap_hse06"] > atoms.info["gap_pbesol"]


def test_counts_follow_the_structures_file(frames, structures):
    order = {a.info["structure_id"]: i for i, a in enumerate(structures)}
    ids = [a.info["structure_id"] for a in frames]
    assert len(set(ids)) == len(ids) and set(ids) <= set(order)
    assert not set(ids) & set(read_failures(DATASET))
    # the accurate fidelity is on every third structure of the sampled set (the first label run), and on the
    # others as the HSE06-everywhere run (labels.subsets.hse06=1) reaches them
    with_hse = {a.info["structure_id"] for a in frames if "gap_hse06" in a.info}
    assert {i for i in ids if order[i] % HSE_STRIDE == 0} <= with_hse
    assert len(structures) == 9 * (4 * 6 + 2 + 1)  # x = k/8 x (4 temperatures x 6 phonon + 2 uniform + 1 equilibrium)
    for atoms in frames:
        source = structures[order[atoms.info["structure_id"]]]
        assert np.allclose(atoms.positions, source.positions) and np.allclose(atoms.cell, source.cell)
        assert atoms.info["x"] == pytest.approx(atoms.get_chemical_symbols().count("Br") / 8)


def test_data_card_is_current(frames):
    card = (DATA / "README.md").read_text()
    status = re.search(r"\*\*(\d+) of the (\d+) structures", card)
    assert status and int(status.group(1)) == len(frames)
    assert (DATA / "gap_histograms.png").stat().st_size > 10_000


@pytest.mark.parametrize("name", ["Ag3SBr", "Ag3SI"])
def test_parent_force_constants_load_in_phonopy(name):
    ph = phonopy.load(DATA / "phonons" / name / "phonopy.yaml", produce_fc=False)
    assert ph.force_constants.shape[-2:] == (3, 3) and ph.force_constants.shape[1] == 40
    assert np.isfinite(ph.force_constants).all()
    # acoustic sum rule of DFT finite-displacement force constants, to GPAW's numerical noise
    assert np.abs(ph.force_constants.sum(axis=1)).max() < 0.1
    assert (DATA / "phonons" / name / "band_structure.png").stat().st_size > 10_000


@pytest.mark.slow
def test_recomputed_structure_matches_stored_energy(frames):
    """One bundled structure recomputed with the same GPAW settings: energy within 1 meV/atom."""
    from capml.labels.gpaw import GPAWLabeller

    atoms = next(a for a in frames if a.info["sampling"] == "equilibrium")
    labels = GPAWLabeller(hybrid=None).label(atoms)
    assert abs(labels.energy_eV - atoms.info["REF_energy"]) / len(atoms) < 1e-3
    assert labels.gaps_eV["pbesol"] == pytest.approx(atoms.info["gap_pbesol"], abs=5e-3)


LABEL_SETS = [(f"{name}.extxyz", f"{name}_structures.extxyz") for name in ("relaxed", "relaxed_r2", "relaxed_rattle")] + [
    (f"al_round{r}.extxyz", f"al_round{r}_structures.extxyz") for r in (0, 1)] + [
    (f"md_check_{run}.extxyz", f"md_check_{run}_structures.extxyz")
    for run in ("round0", "round1_seed0", "round1_seed1", "round1_seed2", "eg_map_T100", "paper300")] + [
    ("static_cells.extxyz", "static_cells_structures.extxyz")]


@pytest.mark.parametrize("name, inputs", LABEL_SETS)
def test_label_sets_where_the_simulation_goes(name, inputs):
    """Relaxed configurations, active-learning MD snapshots and the earlier MD checks: the contract, both
    fidelities on every frame, the sampled set's settings, and frames that are exactly their label inputs."""
    from capml.io.shards import shard_files

    path = DATA / name
    parts = [path] if path.is_file() else []
    parts += shard_files(path)  # a set still being labelled lives in shard files until merged
    if not parts:
        pytest.skip(f"{path}: not labelled yet")
    source = {a.info["structure_id"]: a for a in read_structures(DATA / inputs)}
    seen = []
    for part in parts:
        labelled = read_dataset(part, gaps=["pbesol", "hse06"])
        settings = read_settings(part).fidelities
        reference = read_settings(DATASET).fidelities
        assert settings["pbesol"] == reference["pbesol"] and settings["hse06"] == reference["hse06"]
        for atoms in labelled:
            origin = source[atoms.info["structure_id"]]
            assert np.allclose(atoms.positions, origin.positions) and np.allclose(atoms.cell, origin.cell)
            assert atoms.info["gap_hse06"] > atoms.info["gap_pbesol"] >= 0
            assert atoms.info["sampling"] in ("relaxed", "md", "static") and "config_id" in atoms.info
        seen += [a.info["structure_id"] for a in labelled]
    assert len(set(seen)) == len(seen)


def test_relaxed_set_has_every_inequivalent_decoration_once():
    from capml.structures.system import load_system

    path = DATA / "relaxed.extxyz"
    if not path.is_file():
        pytest.skip("relaxed set not labelled yet")
    system = load_system("ag3sbri")
    expected = {d.config_id for k in range(9) for d in system.decorations(k)}
    labelled = [a.info["config_id"] for a in read_dataset(path, gaps=["pbesol", "hse06"])]
    assert sorted(labelled) == sorted(expected) and len(expected) == 22


MESH_SETS = [("kconv_k2.extxyz", "kconv_structures.extxyz"), ("kconv_cell_k2.extxyz", "kconv_cell_structures.extxyz"),
             ("kmesh_k2.extxyz", "kmesh_structures.extxyz"), ("kconv_k2shift.extxyz", "kconv_structures.extxyz"),
             ("kconv_ecut450.extxyz", "kconv_structures.extxyz"),
             ("kmesh_hybrid.extxyz", "kmesh_hybrid_structures.extxyz")]


@pytest.mark.parametrize("name, inputs", MESH_SETS)
def test_k_point_and_cutoff_labels_are_their_inputs_at_their_own_setting(name, inputs):
    """The convergence study's labels: exactly their input structures, PBEsol energy, forces, stress and gap, and
    label settings that differ from the bundled Γ-only dataset's (so that nothing merges them with it)."""
    from capml.io.shards import shard_files

    path = DATA / name
    parts = ([path] if path.is_file() else []) + shard_files(path)
    if not parts:
        pytest.skip(f"{path}: not labelled yet")
    source = {a.info["structure_id"]: a for a in read_structures(DATA / inputs)}
    gamma = read_settings(DATASET).fidelities["pbesol"]
    for part in parts:
        settings = read_settings(part).fidelities["pbesol"]
        assert settings != gamma and settings["xc"] == gamma["xc"]
        if not part.is_file():  # a shard still on its first structure has written only its settings
            continue
        for atoms in read_dataset(part, gaps=["pbesol"]):
            origin = source[atoms.info["structure_id"]]
            assert np.allclose(atoms.positions, origin.positions) and np.allclose(atoms.cell, origin.cell)


def test_the_mlip_refit_sets_are_disjoint_and_never_pooled_with_the_gamma_only_sets():
    train = {a.info["structure_id"] for a in read_dataset(DATA / "kmesh_train.extxyz")}
    held = {a.info["structure_id"] for a in read_dataset(DATA / "kmesh_heldout.extxyz")}
    assert held and not train & held
    assert {"static_min_Ag3SI", "static_min_Ag3SBr"} <= held
    from capml.cli import CONFIG_DIR
    from omegaconf import OmegaConf

    pooled = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "system" / "ag3sbri.yaml").labelled_sets)
    assert pooled and not [p for p in pooled if "kmesh" in p or "kconv" in p]
