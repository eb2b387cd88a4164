"""Normal-mode decomposition on an exact harmonic crystal: the fitted frequencies are phonopy's."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT

from capml.phonons import full_force_constants, gamma_modes, harmonic_phonons, renormalised_force_constants
from capml.simulate.md import MDSettings, MDSystem, read_trajectory, run_md
from capml.simulate.nmd import decompose, stabilisation_verdict, write_results

from .conftest import HarmonicModel


@pytest.fixture(scope="module")
def copper():
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    phonon = harmonic_phonons(cu, EMT(), np.eye(3, dtype=int))
    return cu, phonon


def test_harmonic_md_gives_phonopy_frequencies_within_2_percent(copper, tmp_path):
    cu, phonon = copper
    fc = full_force_constants(phonon)
    replicas = 8  # batched copies: their spectra are averaged, which is cheaper than one long run
    settings = MDSettings(timestep_fs=1.0, friction_per_ps=0.5, n_steps=8000, save_every_steps=10, seed=2)
    paths = run_md([MDSystem(f"cu{i}", cu, 300.0) for i in range(replicas)], HarmonicModel(cu.positions, fc, replicas),
                   tmp_path, settings, progress=False)
    result = decompose([read_trajectory(p, discard_fs=1000) for p in paths.values()], cu, fc, segments=4)

    # reference: phonopy's own frequencies at the q-points commensurate with the 2x2x2 conventional cell
    phonon.run_qpoints(_commensurate_primitive_qpoints(phonon))
    reference = np.sort(phonon.get_qpoints_dict()["frequencies"].ravel())
    optical = ~result["acoustic"]
    fitted = np.sort(result["renormalised_THz"][optical])
    np.testing.assert_allclose(fitted, reference[3:], rtol=0.02)
    assert stabilisation_verdict(result)["verdict"].startswith("harmonically stable")

    verdict = write_results(result, cu, 300.0, tmp_path / "nmd")
    assert verdict.startswith("harmonically stable")
    for name in ("modes.csv", "verdict.json", "spectra.png", "dispersion.png", "phonopy.yaml"):
        assert (tmp_path / "nmd" / name).stat().st_size > 0


def _commensurate_primitive_qpoints(phonon) -> np.ndarray:
    """q-points (reduced, primitive reciprocal basis) commensurate with phonopy's supercell."""
    from phonopy.harmonic.dynmat_to_fc import get_commensurate_points

    smat = np.rint(np.linalg.inv(phonon.primitive_matrix)).astype(int)
    return get_commensurate_points(smat)


def test_renormalised_force_constants_reproduce_given_frequencies(copper):
    cu, phonon = copper
    fc = full_force_constants(phonon)
    frequencies, vectors = gamma_modes(cu, fc)
    shifted = frequencies * 1.1
    rebuilt = renormalised_force_constants(vectors, shifted, cu.get_masses())
    np.testing.assert_allclose(gamma_modes(cu, rebuilt)[0], shifted, atol=1e-6)
    np.testing.assert_allclose(renormalised_force_constants(vectors, frequencies, cu.get_masses()), fc, atol=1e-8)


def test_verdict_names_stabilised_and_soft_modes():
    result = {"harmonic_THz": np.array([0, 0, 0, -1.2, -0.8, 2.0]),
              "renormalised_THz": np.array([0, 0, 0, 0.9, 0.01, 2.1]),
              "acoustic": np.array([True, True, True, False, False, False])}
    verdict = stabilisation_verdict(result)
    assert verdict["stabilised_modes"] == [3]
    assert verdict["verdict"] == "1 of 2 imaginary harmonic modes stay soft"
    result["renormalised_THz"][4] = 0.5
    assert stabilisation_verdict(result)["verdict"].startswith("dynamically stabilised: all 2")


def test_dispersions_at_two_temperatures_share_the_band_path(copper, tmp_path):
    """Force constants scaled by 1.21 scale every frequency by 1.1 on the same q-points (phonopy's own result)."""
    from phonopy import Phonopy

    from capml.phonons import to_phonopy_atoms
    from capml.simulate.nmd import plot_dispersions

    cu, phonon = copper
    stiffer = Phonopy(to_phonopy_atoms(cu), supercell_matrix=np.eye(3, dtype=int), primitive_matrix="auto")
    stiffer.force_constants = full_force_constants(phonon) * 1.21
    harmonic = Phonopy(to_phonopy_atoms(cu), supercell_matrix=np.eye(3, dtype=int), primitive_matrix="auto")
    harmonic.force_constants = full_force_constants(phonon)
    plot_dispersions({"0 K": harmonic, "300 K": stiffer}, tmp_path / "d.png", "Cu")
    a, b = harmonic.band_structure, stiffer.band_structure
    for qa, qb, fa, fb in zip(a.qpoints, b.qpoints, a.frequencies, b.frequencies):
        np.testing.assert_allclose(qa, qb)
        np.testing.assert_allclose(fb, 1.1 * fa, atol=1e-6)
    assert (tmp_path / "d.png").stat().st_size > 10_000


@pytest.fixture(scope="module")
def small_copper_runs(tmp_path_factory):
    """A harmonic 4-atom Cu cell (8 replicas): a Langevin run, then NVE segments from its last states."""
    cu = bulk("Cu", "fcc", a=3.61, cubic=True)
    fc = full_force_constants(harmonic_phonons(cu, EMT(), np.eye(3, dtype=int)))
    out = tmp_path_factory.mktemp("nmd_small")
    replicas, friction = 8, 3.0
    model = HarmonicModel(cu.positions, fc, replicas)
    nvt = run_md([MDSystem(f"cu{i}", cu, 300.0) for i in range(replicas)], model, out / "nvt",
                 MDSettings(timestep_fs=2.0, friction_per_ps=friction, n_steps=16000, save_every_steps=5, seed=1),
                 progress=False)
    last = [read_trajectory(p)[-1] for p in nvt.values()]
    nve = run_md([MDSystem(f"cu{i}", a, 300.0) for i, a in enumerate(last)], model, out / "nve",
                 MDSettings(timestep_fs=2.0, n_steps=8000, save_every_steps=5, ensemble="nve", seed=1),
                 progress=False)
    return cu, fc, friction, nvt, nve


@pytest.mark.slow
def test_langevin_lines_carry_the_thermostat_width_and_nve_lines_none(small_copper_runs):
    """Exact harmonic crystal: no intrinsic linewidth. Under Langevin friction γ every line has FWHM γ / 2π (the
    damped oscillator's spectrum); in NVE a line is as sharp as the resolution allows."""
    cu, fc, friction, nvt, nve = small_copper_runs
    harmonic = gamma_modes(cu, fc)[0]
    gamma_THz = friction / (2 * np.pi)
    langevin = decompose([read_trajectory(p, discard_fs=2000) for p in nvt.values()], cu, fc, segments=4,
                         thermostat_fwhm_THz=gamma_THz)
    optical = ~langevin["acoustic"]
    assert langevin["resolution_THz"] == pytest.approx(1.44 / 7.5, rel=0.02)  # 4 segments of 7.5 ps
    np.testing.assert_allclose(langevin["linewidth_THz"][optical], gamma_THz, atol=langevin["resolution_THz"])
    assert not langevin["resolved"].any()  # width - γ/2π below the resolution: nothing intrinsic
    np.testing.assert_allclose(langevin["renormalised_THz"][optical], harmonic[optical], rtol=0.02)

    micro = decompose([read_trajectory(p) for p in nve.values()], cu, fc, segments=2)
    assert micro["resolution_THz"] == pytest.approx(1.44 / 8.0, rel=0.02)
    assert micro["thermostat_fwhm_THz"] == 0
    assert (micro["linewidth_THz"][optical] < 1.5 * micro["resolution_THz"]).all()
    assert not micro["resolved"].any()
    np.testing.assert_allclose(micro["renormalised_THz"][optical], harmonic[optical], rtol=0.01)
    # degenerate modes share one fit of their summed spectrum
    for k in np.unique(micro["degenerate_set"][optical]):
        members = np.flatnonzero(micro["degenerate_set"] == k)
        assert np.ptp(harmonic[members]) < 0.02 and np.ptp(micro["renormalised_THz"][members]) == 0


def test_nve_continues_the_thermalised_state_and_conserves_energy(tmp_path):
    cu = bulk("Cu", "fcc", a=3.61, cubic=True)
    fc = full_force_constants(harmonic_phonons(cu, EMT(), np.eye(3, dtype=int)))
    model = HarmonicModel(cu.positions, fc, 2)
    nvt = run_md([MDSystem(f"cu{i}", cu, 300.0) for i in range(2)], model, tmp_path / "nvt",
                 MDSettings(timestep_fs=2.0, friction_per_ps=5.0, n_steps=500, save_every_steps=50, seed=1),
                 progress=False)
    last = [read_trajectory(p)[-1] for p in nvt.values()]
    nve = run_md([MDSystem(f"cu{i}", a, 300.0) for i, a in enumerate(last)], model, tmp_path / "nve",
                 MDSettings(timestep_fs=2.0, n_steps=2000, save_every_steps=5, ensemble="nve", seed=1),
                 progress=False)
    for path, start in zip(nve.values(), last):
        frames = read_trajectory(path)
        np.testing.assert_allclose(frames[0].get_velocities(), start.get_velocities(), atol=1e-6)
        np.testing.assert_allclose(frames[0].positions, start.positions, atol=1e-6)
        total = np.array([f.info["energy_eV"] + f.get_kinetic_energy() for f in frames])
        thermal_eV = 3 * len(start) * units.kB * 300  # equipartition: the energy the modes carry
        # velocity Verlet on a harmonic crystal: bounded fluctuations of order (ω dt)² / 8 ≈ 0.1 %, no drift
        assert np.ptp(total) < 0.01 * thermal_eV
        assert abs(total[-100:].mean() - total[:100].mean()) < 0.002 * thermal_eV


def test_verdict_needs_weight_above_the_resolution():
    """A soft mode whose fitted centre clears the threshold but whose spectral weight sits below the resolution is
    not called stabilised."""
    result = {"harmonic_THz": np.array([0, 0, 0, -1.2, -0.8]), "renormalised_THz": np.array([0, 0, 0, 0.9, 0.9]),
              "median_THz": np.array([0, 0, 0, 0.95, 0.1]), "resolution_THz": 0.3,
              "acoustic": np.array([True, True, True, False, False])}
    verdict = stabilisation_verdict(result)
    assert verdict["stabilised_modes"] == [3] and verdict["resolution_THz"] == 0.3
    result["renormalised_THz"][4] = 0.2
    verdict = stabilisation_verdict(result)
    assert verdict["unresolved_modes"] == [4] and "below the 0.30 THz resolution" in verdict["verdict"]
