"""Phonons with phonopy: harmonic force constants, their files, dispersion plots, imaginary modes and stability,
Γ modes, renormalised force constants and thermal occupations (the one phonons module of capml).

Force constants come from phonopy finite displacements with any ASE calculator and are saved as phonopy.yaml
(force constants included; ``phonopy.load`` reads it). A supercell is handled as its own primitive cell where
its exact modes are wanted: every q-point of the parent commensurate with it is one of its Γ modes, so a
decorated solid-solution supercell (broken symmetry, mixed masses) needs nothing special. Frequencies are in THz,
imaginary ones written negative (phonopy's convention); force constants in eV/Å².
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import phonopy
from scipy import constants
from ase import Atoms
from ase.calculators.calculator import Calculator
from phonopy import Phonopy
from phonopy.harmonic.force_constants import compact_fc_to_full_fc
from phonopy.structure.atoms import PhonopyAtoms
from tqdm.auto import tqdm

from capml.errors import InputError

AMU_A2 = constants.atomic_mass * 1e-20  # kg m² in one amu Å²

# Frequencies (THz) below this count as imaginary: the margin below zero keeps numerical noise on the acoustic
# modes near Γ from counting as an instability.
IMAGINARY_THZ = -0.05


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


def primitive_matrix(cell: PhonopyAtoms, symprec: float) -> np.ndarray:
    """The primitive cell that phonopy's ``primitive_matrix="auto"`` finds from the symmetry of ``cell``, as the
    explicit matrix: phonopy 4 warns on every "auto" that resolves to another cell than the one given."""
    from phonopy.structure.cells import guess_primitive_matrix

    return guess_primitive_matrix(cell, symprec=symprec)


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
    cell = to_phonopy_atoms(unitcell)
    phonon = Phonopy(
        cell,
        supercell_matrix=np.diag(supercell_matrix) if np.ndim(supercell_matrix) == 1 else supercell_matrix,
        primitive_matrix=primitive_matrix(cell, symprec),
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


def load_phonons(path: str | Path) -> Phonopy:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: phonopy file not found (expected phonopy.yaml with force constants)")
    try:
        # the tolerance the file was made with: phonopy.load's default (1e-5) cannot find the primitive cell of a
        # relaxed supercell whose symmetry holds to 1e-3 only ("Cell trimming failed")
        phonon = phonopy.load(str(path), is_compact_fc=False, symmetrize_fc=False, log_level=0,
                              symprec=_symmetry_tolerance(path))
    except Exception as err:
        raise InputError(f"{path}: cannot load phonopy file ({type(err).__name__}: {err})") from err
    if phonon.force_constants is None:
        raise InputError(f"{path}: no force constants (field 'force_constants' or forces expected)")
    return phonon


def _symmetry_tolerance(path: Path, default: float = 1e-5) -> float:
    """``phonopy: symmetry_tolerance`` from the head of a phonopy.yaml (phonopy writes it, phonopy.load ignores it)."""
    with open(path) as handle:
        for _, line in zip(range(20), handle):
            if line.strip().startswith("symmetry_tolerance:"):
                return float(line.split(":", 1)[1])
    return default


def full_force_constants(phonon: Phonopy) -> np.ndarray:
    """Force constants as the full (n_super, n_super, 3, 3) array, in eV/Å^2."""
    fc = phonon.force_constants
    if fc.shape[0] != fc.shape[1]:
        fc = compact_fc_to_full_fc(phonon.primitive, fc)
    return np.asarray(fc)


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


def gamma_modes(atoms: Atoms, force_constants: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Γ frequencies (THz, imaginary as negative) and eigenvectors (3n, 3n; columns) of the supercell."""
    phonon = Phonopy(to_phonopy_atoms(atoms), supercell_matrix=np.eye(3, dtype=int), primitive_matrix="P")
    phonon.force_constants = force_constants
    frequencies, eigenvectors = phonon.get_frequencies_with_eigenvectors([0, 0, 0])
    return np.asarray(frequencies), np.real(np.asarray(eigenvectors))


def mode_probe(atoms: Atoms, eigenvector: np.ndarray, max_displacement_A: float) -> tuple[Atoms, float]:
    """``atoms`` displaced along one Γ mode (a unit, mass-weighted eigenvector of length 3n) so that the atom that
    moves most moves by ``max_displacement_A``; returns the structure and its normal coordinate Q in Å·sqrt(amu)
    (u_i = Q e_i / sqrt(m_i))."""
    masses = atoms.get_masses()
    shape = np.asarray(eigenvector, float).reshape(len(atoms), 3) / np.sqrt(masses)[:, None]
    q = float(max_displacement_A / np.linalg.norm(shape, axis=1).max())
    probe = atoms.copy()
    probe.positions += q * shape
    return probe, q


def mode_frequency_from_forces(forces: np.ndarray, masses: np.ndarray, eigenvector: np.ndarray, q: float) -> float:
    """The frequency (THz, imaginary as negative) of a Γ mode from the forces on a structure displaced along it by
    normal coordinate ``q`` (:func:`mode_probe`), all other modes at rest: the generalised force on the mode is
    -ω² q, so ω² = -(Σ_i e_i·F_i/sqrt(m_i)) / q. Exact in the harmonic limit; at finite q it is the mode's secant
    stiffness, the same for any method given the same structure."""
    from phonopy.physical_units import get_physical_units

    e = np.asarray(eigenvector, float).reshape(len(masses), 3)
    generalised = float((e * np.asarray(forces, float) / np.sqrt(masses)[:, None]).sum())
    omega2 = -generalised / q  # eV/Å²/amu
    return float(np.sign(omega2) * np.sqrt(abs(omega2)) * get_physical_units().DefaultToTHz)


def renormalised_force_constants(eigenvectors: np.ndarray, frequencies_THz: np.ndarray,
                                 masses: np.ndarray) -> np.ndarray:
    """Full (n, n, 3, 3) force constants in eV/Å² whose Γ modes have the given frequencies."""
    from phonopy.physical_units import get_physical_units

    factor = get_physical_units().DefaultToTHz  # THz = factor * sqrt(eV/Å²/amu)
    omega2 = np.sign(frequencies_THz) * (frequencies_THz / factor) ** 2
    dynmat = (eigenvectors * omega2) @ eigenvectors.T
    sqrt_m = np.repeat(np.sqrt(masses), 3)
    phi = dynmat * np.outer(sqrt_m, sqrt_m)
    n = len(masses)
    return phi.reshape(n, 3, n, 3).transpose(0, 2, 1, 3)


def imaginary_modes(phonon: Phonopy, threshold_THz: float = IMAGINARY_THZ) -> dict:
    """Frequencies below ``threshold_THz`` (phonopy writes imaginary ones as negative) on the band path."""
    bands = phonon.get_band_structure_dict()
    found = []
    for path_q, path_f in zip(bands["qpoints"], bands["frequencies"]):
        for q, freqs in zip(path_q, path_f):
            for branch, f in enumerate(freqs):
                if f < threshold_THz:
                    found.append({"q": np.round(q, 4).tolist(), "branch": branch, "frequency_THz": round(float(f), 4)})
    lowest = min((m["frequency_THz"] for m in found), default=None)
    return {"n_imaginary_on_path": len(found), "lowest_THz": lowest, "modes": found[:200]}


def stability(phonon: Phonopy, threshold_THz: float = IMAGINARY_THZ) -> dict:
    """Imaginary modes at every q-point commensurate with the supercell (its Γ modes, exact for this
    cell: the ones MD and frozen modes see) and along the interpolated band path."""
    commensurate, _ = gamma_modes(to_ase_atoms(phonon.supercell), full_force_constants(phonon))
    soft = np.sort(commensurate[commensurate < threshold_THz])
    path = imaginary_modes(phonon, threshold_THz)
    stable = not len(soft) and not path["n_imaginary_on_path"]
    if stable:
        verdict = "dynamically stable (harmonic): no imaginary modes"
    else:
        lowest = min([*soft, path["lowest_THz"] or 0.0])
        verdict = (f"harmonically unstable: {len(soft)} imaginary supercell Γ modes, "
                   f"{path['n_imaginary_on_path']} imaginary band-path points, lowest {lowest:.2f} THz")
    return {
        "verdict": verdict,
        "stable": stable,
        "threshold_THz": threshold_THz,
        "imaginary_supercell_gamma_THz": np.round(soft, 4).tolist(),
        "path": path,
    }


def bose_occupation(frequencies_THz: np.ndarray, temperature_K: float) -> np.ndarray:
    """Bose-Einstein occupation n(|ν|, T) of each mode (0 at T = 0)."""
    omega = 2 * np.pi * np.abs(frequencies_THz) * 1e12
    if temperature_K <= 0:
        return np.zeros_like(omega)
    return 1.0 / np.expm1(constants.hbar * omega / (constants.k * temperature_K))


def mode_amplitudes(frequencies_THz: np.ndarray, temperature_K: float) -> np.ndarray:
    """RMS mass-weighted amplitude sqrt(ħ(2n+1)/(2ω)) of each mode, in Å·sqrt(amu); |ω| for imaginary."""
    omega = 2 * np.pi * np.abs(np.asarray(frequencies_THz, float)) * 1e12  # rad/s
    n = bose_occupation(frequencies_THz, temperature_K)
    return np.sqrt(constants.hbar * (2 * n + 1) / (2 * omega) / AMU_A2)


PHONOPY_FILE = "phonopy.yaml"


def config_phonons(atoms: Atoms, calculator: Calculator, out_dir: str | Path, displacement_A: float = 0.01,
                   symprec: float = 1e-3) -> Phonopy:
    """Harmonic phonons of one relaxed supercell (its own unit cell, supercell matrix 1, so its force constants
    are the ones MD, normal-mode decomposition and frozen modes use) in ``out_dir``: ``phonopy.yaml`` (force
    constants included), ``band_dos.png``, and ``stability.json`` listing the imaginary modes at Γ of the
    supercell and along the band path. Resumable: forces are cached per displacement, and ``phonopy.yaml``,
    written last, marks it done."""
    import logging

    from capml.io.jsonio import write_json

    out_dir = Path(out_dir)
    target = out_dir / PHONOPY_FILE
    if target.exists():
        return load_phonons(target)
    phonon = harmonic_phonons(atoms, calculator, np.eye(3, dtype=int), displacement_A, workdir=out_dir / "forces",
                              symprec=symprec)
    phonon.auto_band_structure(npoints=51)
    report = stability(phonon)
    save_dispersion_plot(phonon, out_dir / "band_dos.png",
                         f"{atoms.info.get('config_id', '')} harmonic phonons\n{report['verdict']}", with_dos=True)
    write_json((out_dir / "stability.json"), report, indent=1)
    save_phonons(phonon, target)  # last: its presence marks the configuration done
    logging.getLogger(__name__).info("%s: %s", atoms.info.get("config_id", out_dir.name), report["verdict"])
    return phonon
