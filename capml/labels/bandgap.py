"""Band gap from eigenvalues and occupations (never from a smeared DOS)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from capml.errors import InputError


@dataclass(frozen=True)
class BandGap:
    gap_eV: float
    vbm_eV: float
    cbm_eV: float
    vbm_k: int
    cbm_k: int

    @property
    def direct(self) -> bool:
        return self.vbm_k == self.cbm_k


def band_gap(eigenvalues: np.ndarray, occupations: np.ndarray, threshold: float = 0.5,
             aufbau: bool = False) -> BandGap:
    """Gap between the highest filled and the lowest empty state over all spins and k-points.

    eigenvalues, occupations: (n_spins, n_kpts, n_bands) arrays. Occupations are normalised to [0, 1]
    per state (callers divide out spin degeneracy and k-point weights); a state is filled when its
    occupation exceeds ``threshold``. A metal (a filled state above an empty one) gives gap 0.

    ``aufbau``: at each (spin, k) the number of filled states is kept but they are the lowest of
    ``eigenvalues``. For eigenvalues corrected after the occupations were fixed (a non-self-consistent
    hybrid on a GGA ground state), where two states near the Fermi level can swap order; the band
    indices of the result then refer to the sorted order.
    """
    eigenvalues = np.asarray(eigenvalues, dtype=float)
    occupations = np.asarray(occupations, dtype=float)
    if eigenvalues.ndim != 3 or eigenvalues.shape != occupations.shape:
        raise InputError(
            f"eigenvalues {eigenvalues.shape} and occupations {occupations.shape}: "
            "expected two arrays of shape (n_spins, n_kpts, n_bands)"
        )
    if aufbau:
        eigenvalues = np.sort(eigenvalues, axis=-1)
        occupations = -np.sort(-occupations, axis=-1)
    filled = occupations > threshold
    if not filled.any() or filled.all():
        raise InputError("band gap: need both filled and empty states (add empty bands)")
    occ_eigs = np.where(filled, eigenvalues, -np.inf)
    emp_eigs = np.where(filled, np.inf, eigenvalues)
    vbm_flat = int(np.argmax(occ_eigs))
    cbm_flat = int(np.argmin(emp_eigs))
    vbm = float(occ_eigs.flat[vbm_flat])
    cbm = float(emp_eigs.flat[cbm_flat])
    shape = eigenvalues.shape
    vbm_k = np.unravel_index(vbm_flat, shape)[1]
    cbm_k = np.unravel_index(cbm_flat, shape)[1]
    return BandGap(max(cbm - vbm, 0.0), vbm, cbm, int(vbm_k), int(cbm_k))


def calculator_eigenvalues(calc) -> tuple[np.ndarray, np.ndarray]:
    """(n_spins, n_kpts, n_bands) eigenvalues and [0, 1]-normalised occupations of an ASE calculator.

    Codes scale occupations differently (GPAW by k-point weight and spin degeneracy, VASP not at all).
    The lowest valence band is always full, so each (spin, k) block is divided by its own maximum.
    """
    nspins = calc.get_number_of_spins()
    nkpts = len(calc.get_ibz_k_points())
    eigs = np.array([[calc.get_eigenvalues(kpt=k, spin=s) for k in range(nkpts)] for s in range(nspins)])
    occs = np.array([[calc.get_occupation_numbers(kpt=k, spin=s) for k in range(nkpts)] for s in range(nspins)])
    return eigs, normalised_occupations(occs)


def ase_calculator_gap(calc) -> BandGap:
    """Gap of any ASE calculator that exposes eigenvalues and occupation numbers per k-point and spin."""
    return band_gap(*calculator_eigenvalues(calc))


def normalised_occupations(occupations: np.ndarray) -> np.ndarray:
    occupations = np.asarray(occupations, dtype=float)
    full = occupations.max(axis=-1, keepdims=True)
    return occupations / np.where(full > 0, full, 1.0)
