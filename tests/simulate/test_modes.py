"""Frozen-phonon amplitudes against the analytic formula and phonopy's thermal displacements; the
mode stage with GFN2-xTB gaps (tblite) as an independent gap model."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from phonopy import Phonopy

from capml.labels.tblite import TBLiteLabeller
from capml.phonons import full_force_constants, gamma_modes, harmonic_phonons, to_phonopy_atoms
from capml.phonons import mode_amplitudes
from capml.simulate.modes import frozen_modes, mode_displacements, plot_modes, species_character
from capml.structures.prototypes import antiperovskite

HBAR_J_S = 1.054571817e-34
KB_J_K = 1.380649e-23
AMU_KG = 1.66053906660e-27


@pytest.mark.parametrize("temperature_K", [0.0, 300.0])
def test_single_species_amplitude_is_sqrt_hbar_2n_plus_1_over_2_m_omega(temperature_K):
    mass, frequency_THz = 63.546, 5.0
    omega = 2 * np.pi * frequency_THz * 1e12
    n = 0.0 if temperature_K == 0 else 1 / (np.exp(HBAR_J_S * omega / (KB_J_K * temperature_K)) - 1)
    expected_A = np.sqrt(HBAR_J_S * (2 * n + 1) / (2 * mass * AMU_KG * omega)) * 1e10
    eigenvector = np.zeros((6, 1))
    eigenvector[[0, 4], 0] = 1 / np.sqrt(2)  # two Cu atoms, x on one and y on the other
    u = mode_displacements(eigenvector, mode_amplitudes(np.array([frequency_THz]), temperature_K), np.full(2, mass))
    assert np.linalg.norm(u) == pytest.approx(expected_A, rel=1e-9)
    assert 0.03 < expected_A < 0.1  # a few hundredths of an Å: the seed's 6.24x would give 0.2-0.6 Å


def test_mode_displacements_add_up_to_phonopy_thermal_displacements():
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    fc = full_force_constants(harmonic_phonons(cu, EMT(), np.eye(3, dtype=int)))
    frequencies, vectors = gamma_modes(cu, fc)
    keep = np.abs(frequencies) > 0.05
    u = mode_displacements(vectors[:, keep], mode_amplitudes(frequencies[keep], 300.0), cu.get_masses())
    ours = (u**2).sum(0)  # (n_atoms, 3) mean-square displacement from the Γ modes of this cell

    phonon = Phonopy(to_phonopy_atoms(cu), supercell_matrix=np.eye(3, dtype=int), primitive_matrix="P")
    phonon.force_constants = fc
    phonon.run_mesh([1, 1, 1], with_eigenvectors=True, is_mesh_symmetry=False)
    phonon.run_thermal_displacements(temperatures=[300.0], freq_min=0.05)
    reference = phonon.get_thermal_displacements_dict()["thermal_displacements"][0]
    np.testing.assert_allclose(ours.ravel(), np.ravel(reference), rtol=1e-6)


class GFN2Gaps:
    def __init__(self):
        self.labeller = TBLiteLabeller()

    def predict(self, structures):
        return np.array([self.labeller.label(a).gaps_eV["gfn2"] for a in structures])


def test_frozen_modes_table_with_gfn2_gaps(tmp_path):
    cell = antiperovskite("Ag", "S", "Br", 4.79)
    fc = full_force_constants(harmonic_phonons(cell, TBLiteLabeller().calculator, np.eye(3, dtype=int)))
    table = frozen_modes(cell, fc, GFN2Gaps(), 300.0)
    assert len(table) == 3 * len(cell) - 3
    weights = table.filter(like="weight_")
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-10)
    assert set(table["dominant_species"]) <= {"Ag", "S", "Br"}
    assert np.isfinite(table["delta_gap_eV"]).all()
    # Pm-3m has inversion: every Γ mode is even or odd, so the gap is the same at +Q and -Q
    np.testing.assert_allclose(table["gap_plus_eV"], table["gap_minus_eV"], atol=2e-3)
    character = species_character(np.eye(15), cell.get_chemical_symbols())
    assert character["Ag"].sum() == pytest.approx(9)
    plot_modes(table, tmp_path / "modes.png")
    assert (tmp_path / "modes.png").stat().st_size > 0
