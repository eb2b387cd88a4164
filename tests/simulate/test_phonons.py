"""Harmonic-phonon stage against phonopy run the standard way (primitive cell + supercell matrix)."""

from __future__ import annotations

import json

import numpy as np
import phonopy
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
