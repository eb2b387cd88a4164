"""Phonon-informed thermal displacements (phonopy) and uniform rattles.

Force constants come from :mod:`capml.phonons`. Thermal displacements are drawn with phonopy's
``RandomDisplacements`` (harmonic canonical ensemble, quantum or classical statistics) on the full supercell
treated as its own primitive cell, so decorated solid-solution supercells (broken symmetry, mixed masses) are
handled exactly: every commensurate q-point of the parent is a Γ mode of the supercell.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from ase import Atoms
from phonopy import Phonopy
from phonopy.phonon.random_displacements import RandomDisplacements

from capml.errors import InputError
from capml.phonons import to_phonopy_atoms


def mixed_force_constants(fc_x1: np.ndarray, fc_x0: np.ndarray, x: float) -> np.ndarray:
    """Vegard-like interpolation x FC(x=1) + (1 - x) FC(x=0); keeps the acoustic sum rule of both."""
    if fc_x1.shape != fc_x0.shape:
        raise InputError(f"force constants of the end members differ in shape: {fc_x1.shape} vs {fc_x0.shape}")
    return x * fc_x1 + (1.0 - x) * fc_x0


def thermal_displacements(
    supercell: Atoms,
    force_constants: np.ndarray,
    temperature_K: float,
    n_samples: int,
    seed: int,
    statistics: Literal["quantum", "classical"] = "quantum",
    imaginary_modes: Literal["skip", "abs", "phonopy"] = "phonopy",
    cutoff_frequency_THz: float = 0.01,
) -> np.ndarray:
    """(n_samples, n_atoms, 3) harmonic thermal displacements in Å of ``supercell`` at ``temperature_K``.

    ``force_constants`` is the full (n, n, 3, 3) matrix of this supercell; masses come from ``supercell``.
    Modes with |ν| below ``cutoff_frequency_THz`` (acoustic Γ modes) are not displaced. Imaginary modes
    (a cubic phase stabilised by anharmonicity) are skipped ("skip"), sampled at |ν| ("abs"), or treated
    as phonopy does for its self-consistent sampling ("phonopy": |ν|, and |ν| in (0.01, 0.5) THz shifted
    up by 1 THz so that near-zero modes do not give displacements of several Å).
    """
    n = len(supercell)
    if force_constants.shape != (n, n, 3, 3):
        raise InputError(f"force_constants has shape {force_constants.shape}, expected ({n}, {n}, 3, 3)")
    if temperature_K < 0:
        raise InputError(f"temperature_K={temperature_K}: expected >= 0")
    phonon = Phonopy(to_phonopy_atoms(supercell), supercell_matrix=np.eye(3, dtype=int), primitive_matrix="P")
    sampler = RandomDisplacements(
        phonon.supercell,
        phonon.primitive,
        force_constants,
        dist_func=statistics,
        cutoff_frequency=cutoff_frequency_THz,
    )
    if imaginary_modes == "abs":
        sampler.frequencies = np.abs(sampler.frequencies)
    elif imaginary_modes == "phonopy":
        sampler.treat_imaginary_modes()
    elif imaginary_modes != "skip":
        raise InputError(f"imaginary_modes='{imaginary_modes}': expected 'skip', 'abs' or 'phonopy'")
    sampler.run(temperature_K, number_of_snapshots=n_samples, random_seed=seed)
    return np.array(sampler.u)


def uniform_rattle(atoms: Atoms, amplitude_A: float, seed: int) -> Atoms:
    """Copy of ``atoms`` with every Cartesian coordinate shifted by U(-amplitude, amplitude) Å."""
    rng = np.random.default_rng(seed)
    rattled = atoms.copy()
    rattled.positions += rng.uniform(-amplitude_A, amplitude_A, size=(len(atoms), 3))
    return rattled
