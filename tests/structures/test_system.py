"""The system config group: the bundled Ag3SBr(x)I(1-x) system against a hand-built anti-perovskite, the CsPb(Br,I)3
perovskite system against Burnside's lemma (enumerated and sampled decorations), and a material of the user's own
from a folder outside the checkout, through simulate.py."""

import os
import subprocess
import sys
from math import comb
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.build import bulk
from ase.io import read, write

from capml.errors import InputError
from capml.structures.decorations import burnside_orbit_count, site_permutations
from capml.structures.system import SolidSolution, load_system

ROOT = Path(__file__).resolve().parents[2]
A_BR, A_I = 4.793, 4.869  # Å, the PBEsol lattice constants of Ag3SBr and Ag3SI


def hand_built_ag3sbri(occupation) -> Atoms:
    """The 2x2x2 Ag3SBr(x)I(1-x) supercell built with ase alone: per primitive cell X (corner), S (body centre),
    Ag (face centres), repeated; Br on the X sites where ``occupation`` is True; a = x a(Br) + (1 - x) a(I)."""
    cell = Atoms(["I", "S", "Ag", "Ag", "Ag"], cell=np.eye(3), pbc=True,
                 scaled_positions=[(0, 0, 0), (0.5, 0.5, 0.5), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)])
    template = cell.repeat((2, 2, 2))
    symbols = template.get_chemical_symbols()
    x_sites = [i for i, s in enumerate(symbols) if s == "I"]
    for site, is_br in zip(x_sites, occupation):
        symbols[site] = "Br" if is_br else "I"
    x = np.mean(occupation)
    atoms = template.copy()
    atoms.set_chemical_symbols(symbols)
    atoms.set_cell(template.cell * (x * A_BR + (1 - x) * A_I), scale_atoms=True)
    return atoms


def assert_same(atoms: Atoms, reference: Atoms) -> None:
    assert atoms.get_chemical_symbols() == reference.get_chemical_symbols()
    assert np.array_equal(atoms.positions, reference.positions) and np.array_equal(atoms.cell[:], reference.cell[:])
    assert atoms.pbc.all()


def test_ag3sbri_reproduces_the_hand_built_supercells_bit_for_bit():
    system = load_system("ag3sbri")
    assert (system.n_sites, len(system.primitive), system.end_member_name("Br")) == (8, 5, "Ag3SBr")
    assert_same(system.parent(), hand_built_ag3sbri([False] * 8))
    assert_same(system.end_member("Br"), hand_built_ag3sbri([True] * 8))
    counts = []
    for k in range(9):
        decorations = system.decorations(k)
        counts.append(len(decorations))
        assert sum(d.multiplicity for d in decorations) == comb(8, k)
        for d in decorations:
            atoms = system.build(d)
            assert_same(atoms, hand_built_ag3sbri(d.occupation))
            assert (atoms.info["x"], atoms.info["config_id"]) == (k / 8, f"k{k}of8_d{d.index}")
    assert counts == [1, 1, 3, 3, 6, 3, 3, 1, 1]


def test_bundled_structures_are_rebuilt_from_their_config_ids():
    """The undisplaced frames of data/ag3sbri/structures.extxyz (sampled before the system group existed) are the
    decorations their config_id names, to the file's precision."""
    path = ROOT / "data" / "ag3sbri" / "structures.extxyz"
    if not path.is_file():
        pytest.skip(f"{path}: not bundled")
    system = load_system("ag3sbri")
    frames = [a for a in read(path, ":") if a.info["sampling"] == "equilibrium"]
    assert frames
    for atoms in frames:
        k = round(atoms.info["x"] * 8)
        decoration = next(d for d in system.decorations(k) if d.config_id == atoms.info["config_id"])
        built = system.build(decoration)
        assert built.get_chemical_symbols() == atoms.get_chemical_symbols()
        assert np.allclose(built.positions, atoms.positions, atol=1e-7) and np.allclose(built.cell, atoms.cell)


def test_cspbbri_decorations_against_burnside():
    """40 atoms, 24 X sites; k = 1..3 enumerated (orbit counts equal Burnside's, multiplicities add up to C(24, k));
    k = 12, C(24, 12) = 2,704,156 arrangements, sampled: distinct orbits, each multiplicity the size of its orbit
    under every symmetry operation, and no more orbits than Burnside's count."""
    system = load_system("cspbbri")
    parent = system.parent()
    assert len(parent) == 40 and system.n_sites == 24
    assert parent.get_chemical_formula("metal", empirical=True) == "CsPbI3"
    # the configured lattice constants are the equation-of-state fits committed with the data (stage=lattice)
    import json

    fitted = json.loads((ROOT / "data" / "cspbbri" / "lattice" / "lattice_constants.json").read_text())["end_members"]
    for species in ("Br", "I"):
        assert np.allclose(system.end_member(species).cell.lengths(), 2 * fitted[species]["lattice_constant_A"],
                           atol=2e-4)
    perms = site_permutations(parent, system.site_indices())
    assert len(perms) == 48 * 8  # Oh point group times the supercell's 8 translations
    for k in (1, 2, 3):
        decorations = system.decorations(k)
        assert len(decorations) == burnside_orbit_count(perms, k)
        assert sum(d.multiplicity for d in decorations) == comb(24, k)
    decorations = system.decorations(12)
    assert comb(24, 12) > 20000 and 90 <= len(decorations) <= min(100, burnside_orbit_count(perms, 12))
    occupations = np.array([d.occupation for d in decorations])
    assert (occupations.sum(axis=1) == 12).all()
    images = np.packbits(occupations[:, perms], axis=-1)  # (decorations, operations, 3 bytes)
    codes = (images.astype(np.int64) << np.array([16, 8, 0])).sum(axis=-1)
    orbit_sizes = [len(np.unique(row)) for row in codes]
    assert orbit_sizes == [d.multiplicity for d in decorations]
    smallest = codes.min(axis=1)  # orbits are equal or disjoint: distinct smallest images, distinct orbits
    assert len(np.unique(smallest)) == len(decorations)


def test_a_system_from_a_builder_with_vegard_lattice_constants(tmp_path):
    """(Na,K)Cl rock salt from ase.build.bulk at unit lattice constant, loaded from a YAML file."""
    config = {"name": "nakcl", "parent": {"_target_": "ase.build.bulk", "name": "NaCl", "crystalstructure": "rocksalt",
                                          "a": 1.0},
              "mixed_site": "Na", "species": ["K", "Na"], "lattice_constants": {"K": 6.29, "Na": 5.64},
              "supercell": [2, 2, 2]}
    (tmp_path / "nakcl.yaml").write_text(yaml.safe_dump(config))
    system = load_system(tmp_path / "nakcl.yaml")
    assert system.n_sites == 8 and system.elements == ["Cl", "K", "Na"] and system.end_member_name("K") == "KCl"
    half = system.build(system.decorations(4)[0])
    reference = bulk("NaCl", "rocksalt", a=1.0).repeat((2, 2, 2)).cell[:] * (0.5 * 6.29 + 0.5 * 5.64)
    assert np.allclose(half.cell[:], reference) and half.get_chemical_symbols().count("K") == 4
    with pytest.raises(InputError, match="mixed_site"):
        SolidSolution.from_config({**config, "mixed_site": "Br"})
    with pytest.raises(InputError, match="system.parent"):
        SolidSolution.from_config({**config, "parent": str(tmp_path / "none.cif")})


def test_a_system_from_the_users_folder_samples_through_simulate_py(tmp_path):
    """(Si,Ge) diamond from a POSCAR in Å (no lattice constants: the file's cell for every x), in a config folder
    outside the checkout; `simulate.py stage=sample` with uniform rattles only needs no phonons or models."""
    silicon = bulk("Si", "diamond", a=5.43)
    write(tmp_path / "POSCAR", silicon, format="vasp")
    folder = tmp_path / "conf" / "system"
    folder.mkdir(parents=True)
    (folder / "sige.yaml").write_text(yaml.safe_dump({
        "name": "sige", "parent": str(tmp_path / "POSCAR"), "mixed_site": "Si", "species": ["Ge", "Si"],
        "supercell": [2, 2, 1]}))
    done = subprocess.run(
        [sys.executable, str(ROOT / "simulate.py"), "--config-dir", str(tmp_path / "conf"), "system=sige",
         "stage=sample", "structures.compositions=[0,0.5,1]", "structures.temperatures_K=[]",
         "structures.phonon_samples=0", "structures.uniform_samples=1", "structures.equilibrium_samples=1",
         f"workdir={tmp_path / 'out'}"],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    frames = read(tmp_path / "out" / "structures.extxyz", ":")
    assert len(frames) == 3 * 2
    cell = silicon.repeat((2, 2, 1)).cell[:]
    for atoms in frames:
        assert len(atoms) == 8 and np.allclose(atoms.cell[:], cell)
        assert atoms.get_chemical_symbols().count("Ge") == round(8 * atoms.info["x"])
        undisplaced = atoms.info["sampling"] == "equilibrium"
        assert np.allclose(atoms.positions, silicon.repeat((2, 2, 1)).positions) == undisplaced
    assert sorted({a.info["x"] for a in frames}) == [0.0, 0.5, 1.0]
