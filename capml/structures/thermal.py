"""Phonon-informed thermal displacements (phonopy) and uniform rattles.

Force constants come from phonopy finite displacements with any ASE calculator. Thermal displacements
are drawn with phonopy's ``RandomDisplacements`` (harmonic canonical ensemble, quantum or classical
statistics) on the full supercell treated as its own primitive cell, so decorated solid-solution
supercells (broken symmetry, mixed masses) are handled exactly: every commensurate q-point of the
parent is a Γ mode of the supercell.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
import phonopy
from ase import Atoms
from ase.calculators.calculator import Calculator
from phonopy import Phonopy
from phonopy.harmonic.force_constants import compact_fc_to_full_fc
from phonopy.phonon.random_displacements import RandomDisplacements
from phonopy.structure.atoms import PhonopyAtoms
from tqdm.auto import tqdm

from capml.errors import InputError

log = logging.getLogger(__name__)


def to_phonopy_atoms(atoms: Atoms) -> PhonopyAtoms:
    return PhonopyAtoms(
        symbols=atoms.get_chemical_symbols(),
        cell=np.array(atoms.cell[:]),
        scaled_positions=atoms.get_scaled_positions(),
        masses=atoms.get_masses(),
    )


def to_ase_atoms(cell: PhonopyAtoms) -> Atoms:
    return Atoms(
        symbols=cell.symbols,
        cell=cell.cell,
        scaled_positions=cell.scaled_positions,
        masses=cell.masses,
        pbc=True,
    )


def harmonic_phonons(
    unitcell: Atoms,
    calculator: Calculator | Callable[[Atoms], Calculator],
    supercell_matrix: Sequence[int] | np.ndarray,
    displacement_A: float = 0.01,
    workdir: str | Path | None = None,
    symprec: float = 1e-5,
) -> Phonopy:
    """Harmonic force constants by phonopy finite displacements.

    ``calculator`` is an ASE calculator or a factory that makes one for a given structure. With ``workdir`` the forces
    of each displaced supercell are written as soon as they are computed and reused on a rerun.
    """
    phonon = Phonopy(
        to_phonopy_atoms(unitcell),
        supercell_matrix=np.diag(supercell_matrix) if np.ndim(supercell_matrix) == 1 else supercell_matrix,
        primitive_matrix="auto",
        symprec=symprec,
    )
    phonon.generate_displacements(distance=displacement_A)
    supercells = phonon.supercells_with_displacements
    if workdir is not None:
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
    forces = []
    for i, cell in enumerate(tqdm(supercells, desc="phonopy displacements", unit="calc")):
        cached = workdir / f"forces_{i:04d}.npy" if workdir is not None else None
        if cached is not None and cached.exists():
            forces.append(np.load(cached))
            continue
        atoms = to_ase_atoms(cell)
        atoms.calc = calculator if isinstance(calculator, Calculator) else calculator(atoms)
        f = atoms.get_forces()
        if cached is not None:
            np.save(cached, f)
        forces.append(f)
    phonon.forces = np.array(forces)
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants()
    return phonon


def save_phonons(phonon: Phonopy, path: str | Path) -> None:
    """phonopy.yaml with force constants included, readable by ``phonopy.load``."""
    phonon.save(filename=str(path), settings={"force_constants": True})


def save_dispersion_plot(phonon: Phonopy, path: str | Path, title: str, with_dos: bool = False) -> Path:
    """phonopy's band-structure plot (and total DOS) of a phonon whose band structure is computed, with units and
    a title, to PNG."""
    import matplotlib.pyplot as plt  # phonopy draws through pyplot; its figure is closed again, nothing else

    if with_dos:
        phonon.auto_total_dos()
    (phonon.plot_band_structure_and_dos() if with_dos else phonon.plot_band_structure())
    figure = plt.gcf()
    figure.axes[0].set_ylabel("Frequency (THz)")
    figure.suptitle(title, fontsize=9)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return Path(path)


def load_phonons(path: str | Path) -> Phonopy:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: phonopy file not found (expected phonopy.yaml with force constants)")
    try:
        phonon = phonopy.load(str(path), is_compact_fc=False, symmetrize_fc=False, log_level=0)
    except Exception as err:
        raise InputError(f"{path}: cannot load phonopy file ({type(err).__name__}: {err})") from err
    if phonon.force_constants is None:
        raise InputError(f"{path}: no force constants (field 'force_constants' or forces expected)")
    return phonon


def full_force_constants(phonon: Phonopy) -> np.ndarray:
    """Force constants as the full (n_super, n_super, 3, 3) array, in eV/Å^2."""
    fc = phonon.force_constants
    if fc.shape[0] != fc.shape[1]:
        fc = compact_fc_to_full_fc(phonon.primitive, fc)
    return np.asarray(fc)


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
