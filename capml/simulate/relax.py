"""Relax positions and cell together (ASE optimiser on a FrechetCellFilter)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS, FIRE, LBFGS

from capml.errors import InputError

OPTIMIZERS = {"FIRE": FIRE, "BFGS": BFGS, "LBFGS": LBFGS}


@dataclass
class Relaxed:
    atoms: Atoms  # relaxed copy, no calculator attached
    energy_eV: float
    max_force_eV_A: float
    max_stress_eV_A3: float
    steps: int
    converged: bool


def relax(
    atoms: Atoms,
    calculator: Calculator,
    fmax_eV_A: float = 0.01,
    max_steps: int = 500,
    optimizer: str = "FIRE",
    relax_cell: bool = True,
    pressure_GPa: float = 0.0,
) -> Relaxed:
    """Minimise the energy of a copy of ``atoms``; the cell too unless ``relax_cell`` is False.

    Converged means every force below ``fmax_eV_A`` and, with the cell, every stress component below
    ``fmax_eV_A`` per Å³ (the FrechetCellFilter criterion) within ``max_steps``.
    """
    if optimizer not in OPTIMIZERS:
        raise InputError(f"relax optimizer='{optimizer}': expected one of {sorted(OPTIMIZERS)}")
    work = atoms.copy()
    work.calc = calculator
    target = FrechetCellFilter(work, scalar_pressure=pressure_GPa * units.GPa) if relax_cell else work
    opt = OPTIMIZERS[optimizer](target, logfile=None)
    converged = bool(opt.run(fmax=fmax_eV_A, steps=max_steps))
    forces = work.get_forces()
    stress = work.get_stress(voigt=False) if relax_cell else np.zeros((3, 3))
    result = work.copy()
    result.calc = None
    return Relaxed(
        atoms=result,
        energy_eV=float(work.get_potential_energy()),
        max_force_eV_A=float(np.linalg.norm(forces, axis=1).max()),
        max_stress_eV_A3=float(np.abs(stress).max()),
        steps=int(opt.nsteps),
        converged=converged,
    )
