"""Stage 2: harmonic phonons (phonopy finite displacements with the MLIP) of the lowest configurations.

The relaxed supercell is phonopy's unit cell (supercell matrix 1), so its force constants are the
ones MD, normal-mode decomposition and frozen modes use; for an end member phonopy finds the 5-atom
primitive cell and the dispersion is interpolated from the commensurate q-points. Per configuration:
``phonopy.yaml`` (force constants included; ``phonopy.load`` reads it), ``band_dos.png``, and
``stability.json`` listing the imaginary modes at Γ of the supercell and along the band path.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from phonopy import Phonopy

from capml.io.jsonio import write_json
from capml.phonons import harmonic_phonons, load_phonons, save_dispersion_plot, save_phonons, stability

log = logging.getLogger(__name__)

PHONOPY_FILE = "phonopy.yaml"


def config_phonons(atoms: Atoms, calculator: Calculator, out_dir: str | Path, displacement_A: float = 0.01,
                   symprec: float = 1e-3) -> Phonopy:
    """phonopy.yaml, band_dos.png and stability.json for one relaxed structure in ``out_dir``."""
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
    log.info("%s: %s", atoms.info.get("config_id", out_dir.name), report["verdict"])
    return phonon

