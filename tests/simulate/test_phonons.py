"""Harmonic-phonon stage against phonopy run the standard way (primitive cell + supercell matrix)."""

from __future__ import annotations

import json

import numpy as np
import phonopy
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from phonopy import Phonopy

from capml.phonons import full_force_constants, stability, to_ase_atoms, to_phonopy_atoms
from capml.phonons import config_phonons


def test_supercell_phonons_match_phonopy_on_the_primitive_cell(tmp_path):
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    phonon = config_phonons(cu, EMT(), tmp_path)
    for name in ("phonopy.yaml", "band_dos.png", "stability.json"):
        assert (tmp_path / name).stat().st_size > 0
    report = json.loads((tmp_path / "stability.json").read_text())
    assert report["stable"] and report["imaginary_supercell_gamma_THz"] == []

    # reference: 1-atom fcc primitive, supercell matrix giving the same 32-atom cell, forces from EMT
    reference = Phonopy(to_phonopy_atoms(bulk("Cu", "fcc", a=3.61)),
                        supercell_matrix=[[-2, 2, 2], [2, -2, 2], [2, 2, -2]], primitive_matrix="P")
    reference.generate_displacements(distance=0.01)
    forces = []
    for cell in reference.supercells_with_displacements:
        atoms = to_ase_atoms(cell)
        atoms.calc = EMT()
        forces.append(atoms.get_forces())
    reference.forces = np.array(forces)
    reference.produce_force_constants()
    for q in ([0, 0, 0], [0.5, 0.5, 0.0], [0.5, 0.25, 0.75], [0.31, 0.12, 0.05]):
        reference.run_qpoints([q])
        phonon.run_qpoints([q])  # phonon's primitive is the same fcc cell found by phonopy
        np.testing.assert_allclose(phonon.get_qpoints_dict()["frequencies"],
                                   reference.get_qpoints_dict()["frequencies"], atol=2e-3)

    reloaded = phonopy.load(tmp_path / "phonopy.yaml", log_level=0)
    np.testing.assert_allclose(full_force_constants(reloaded), full_force_constants(phonon), atol=1e-10)
    # a second call reads the file instead of recomputing
    assert config_phonons(cu, None, tmp_path).force_constants is not None


def test_stability_lists_imaginary_modes():
    cu = bulk("Cu", "fcc", a=3.61, cubic=True)
    phonon = Phonopy(to_phonopy_atoms(cu), supercell_matrix=np.eye(3, dtype=int), primitive_matrix="P")
    fc = np.zeros((4, 4, 3, 3))
    for i in range(4):  # a soft (negative) on-site spring: every optical Γ mode imaginary, acoustic ones zero
        for j in range(4):
            fc[i, j] = (-1.0 if i == j else 1.0 / 3) * np.eye(3)
    phonon.force_constants = fc
    phonon.auto_band_structure(npoints=5)
    report = stability(phonon)
    assert not report["stable"]
    assert len(report["imaginary_supercell_gamma_THz"]) == 9
    assert report["path"]["n_imaginary_on_path"] > 0
    assert report["verdict"].startswith("harmonically unstable: 9 imaginary supercell Γ modes")


def test_a_nearly_symmetric_supercell_reloads_with_the_tolerance_it_was_made_with(tmp_path):
    """A relaxed supercell keeps its translational symmetry only to ~1e-4 Å, so phonopy (symprec 1e-3) finds a
    smaller primitive cell; the reload (a resumed pipeline) must use the same tolerance, not phonopy.load's 1e-5,
    which cannot fold the supercell onto that primitive cell."""
    from capml.phonons import load_phonons

    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
    cu.positions += np.random.default_rng(0).normal(scale=1e-4, size=cu.positions.shape)
    made = config_phonons(cu, EMT(), tmp_path)
    assert len(made.primitive) < len(cu)  # phonopy found the smaller cell at 1e-3
    with pytest.raises(RuntimeError, match="trimming"):  # what the reload did before
        phonopy.load(str(tmp_path / "phonopy.yaml"), is_compact_fc=False, symmetrize_fc=False, log_level=0)
    again = load_phonons(tmp_path / "phonopy.yaml")
    assert len(again.primitive) == len(made.primitive)
    np.testing.assert_allclose(full_force_constants(again), full_force_constants(made), atol=1e-12)
    np.testing.assert_allclose(config_phonons(cu, EMT(), tmp_path).get_frequencies([0.5, 0.25, 0]),
                               made.get_frequencies([0.5, 0.25, 0]), atol=1e-6)
