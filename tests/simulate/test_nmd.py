"""Normal-mode decomposition on an exact harmonic crystal: the fitted frequencies are phonopy's."""

from __future__ import annotations

import numpy as np
import pytest
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
