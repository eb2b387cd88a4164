"""Thermal displacements against phonopy's own mesh-based ThermalDisplacements (an independent route)."""

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from phonopy import Phonopy

from capml.errors import InputError
from capml.phonons import (full_force_constants, harmonic_phonons, load_phonons, save_phonons, to_ase_atoms,
                           to_phonopy_atoms)
from capml.structures.thermal import thermal_displacements, uniform_rattle

N = 3  # 3x3x3 supercell of the fcc primitive cell


@pytest.fixture(scope="module")
def copper():
    primitive = bulk("Cu", "fcc", a=3.61)
    supercell = primitive.repeat((N, N, N))
    phonon = harmonic_phonons(supercell, lambda atoms: EMT(), np.eye(3, dtype=int))
    return primitive, supercell, full_force_constants(phonon)


def phonopy_mean_square_displacement(primitive, temperature_K, classical):
    """phonopy's standard route: its own supercell, EMT forces, mesh commensurate with the supercell."""
    phonon = Phonopy(to_phonopy_atoms(primitive), supercell_matrix=np.eye(3, dtype=int) * N, primitive_matrix="P")
    phonon.generate_displacements(distance=0.01)
    forces = []
    for cell in phonon.supercells_with_displacements:
        atoms = to_ase_atoms(cell)
        atoms.calc = EMT()
        forces.append(atoms.get_forces())
    phonon.forces = forces
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants()
    phonon.run_mesh([N, N, N], is_gamma_center=True, with_eigenvectors=True, is_mesh_symmetry=False)
    if not classical:
        phonon.run_thermal_displacements(temperatures=[temperature_K], freq_min=0.01)
        msd = phonon.get_thermal_displacements_dict()["thermal_displacements"][0]  # (natoms, 3), Å^2
        return float(np.mean(msd))
    # classical equipartition per mode, <|Q|^2> = kT / omega^2, from phonopy's mesh eigensolutions
    mesh = phonon.get_mesh_dict()
    freqs_THz, vecs = mesh["frequencies"], mesh["eigenvectors"]
    omega = 2 * np.pi * freqs_THz * 1e12
    valid = freqs_THz > 0.01
    mass_kg = primitive.get_masses()[0] * units._amu
    weight = np.abs(vecs) ** 2  # (nq, 3 natoms, nbands)
    kT = units.kB * temperature_K * units._e
    per_mode = np.where(valid, kT / (mass_kg * np.where(valid, omega, 1.0) ** 2), 0.0)  # m^2
    msd = np.einsum("qib,qb->i", weight, per_mode) / len(freqs_THz) * 1e20  # Å^2 per Cartesian component
    return float(np.mean(msd))


@pytest.mark.parametrize("statistics,temperature_K", [("quantum", 300.0), ("classical", 600.0), ("quantum", 20.0)])
def test_mean_square_amplitude_matches_phonopy_thermal_displacements(copper, statistics, temperature_K):
    primitive, supercell, fc = copper
    u = thermal_displacements(supercell, fc, temperature_K, n_samples=3000, seed=1, statistics=statistics)
    assert u.shape == (3000, len(supercell), 3)
    ours = float(np.mean(u**2))
    reference = phonopy_mean_square_displacement(primitive, temperature_K, classical=statistics == "classical")
    # 3000 snapshots x 78 modes: relative sampling error of the mean square is ~1 %
    assert ours == pytest.approx(reference, rel=0.04)


def test_quantum_exceeds_classical_at_low_temperature(copper):
    _, supercell, fc = copper
    quantum = np.mean(thermal_displacements(supercell, fc, 20.0, 500, seed=2, statistics="quantum") ** 2)
    classical = np.mean(thermal_displacements(supercell, fc, 20.0, 500, seed=2, statistics="classical") ** 2)
    assert quantum > 2 * classical  # zero-point motion dominates at 20 K


def test_seeded_and_centre_of_mass_free(copper):
    _, supercell, fc = copper
    a = thermal_displacements(supercell, fc, 300.0, 5, seed=7)
    b = thermal_displacements(supercell, fc, 300.0, 5, seed=7)
    c = thermal_displacements(supercell, fc, 300.0, 5, seed=8)
    assert np.array_equal(a, b) and not np.allclose(a, c)
    # acoustic Γ modes are not displaced: the centre of mass stays put (one species, equal masses)
    assert np.abs(a.mean(axis=1)).max() < 1e-10


def test_phonopy_yaml_round_trip(tmp_path, copper):
    primitive, _, _ = copper
    phonon = harmonic_phonons(primitive, EMT(), [2, 2, 2])
    save_phonons(phonon, tmp_path / "phonopy.yaml")
    loaded = load_phonons(tmp_path / "phonopy.yaml")
    assert np.allclose(loaded.force_constants, phonon.force_constants)
    with pytest.raises(InputError, match="not found"):
        load_phonons(tmp_path / "missing.yaml")


def test_force_constant_shape_is_checked(copper):
    _, supercell, fc = copper
    with pytest.raises(InputError, match="force_constants"):
        thermal_displacements(supercell[:5], fc, 300.0, 1, seed=0)


def test_uniform_rattle_bounds_and_seed():
    atoms = bulk("Cu", cubic=True).repeat(2)
    a = uniform_rattle(atoms, 0.1, seed=4)
    b = uniform_rattle(atoms, 0.1, seed=4)
    delta = a.positions - atoms.positions
    assert np.array_equal(a.positions, b.positions)
    assert np.abs(delta).max() <= 0.1
    assert np.std(delta) == pytest.approx(0.1 / np.sqrt(3), rel=0.25)  # uniform on [-a, a]
