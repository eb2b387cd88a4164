"""Harmonic phonons of the end members of a solid solution, saved for the thermal sampler.

For each end member the force constants are computed on exactly the supercell the sampler builds
(so atom order matches), written as phonopy.yaml with force constants, and the dispersion along
phonopy's automatic band path is plotted, with the imaginary modes listed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from capml.io.jsonio import write_json
from capml.phonons import harmonic_phonons, imaginary_modes, save_dispersion_plot, save_phonons
from capml.structures.system import SolidSolution

log = logging.getLogger(__name__)


def end_member_phonons(
    system: SolidSolution,
    calculator: Callable[[Atoms], Calculator],
    out_dir: str | Path,
    displacement_A: float = 0.01,
) -> dict[str, Path]:
    """phonopy.yaml per end member (by species) under ``out_dir/<end member name>/``; resumes from cached
    displacement forces."""
    out_dir = Path(out_dir)
    written = {}
    for species in system.species:
        name = system.end_member_name(species)
        folder = out_dir / name
        target = folder / "phonopy.yaml"
        written[species] = target
        if target.exists():
            log.info("%s exists; skipping", target)
            continue
        phonon = harmonic_phonons(system.end_member(species), calculator, np.eye(3, dtype=int), displacement_A,
                                  workdir=folder / "forces")
        phonon.auto_band_structure(npoints=51)
        report = imaginary_modes(phonon)
        save_dispersion_plot(phonon, folder / "band_structure.png", f"{name} harmonic dispersion" + (
            f" — {report['n_imaginary_on_path']} imaginary points, lowest {report['lowest_THz']} THz"
            if report["n_imaginary_on_path"] else ""))
        write_json((folder / "imaginary_modes.json"), report, indent=1)
        save_phonons(phonon, target)
    return written
