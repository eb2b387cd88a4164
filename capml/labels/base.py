"""The labeller interface: one structure in, energy/forces/stress and gaps per fidelity out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from capml.io.contract import ENERGY_KEY, FORCES_KEY, GAP_PREFIX, STRESS_KEY


@dataclass
class Labels:
    energy_eV: float | None = None
    forces_eV_A: np.ndarray | None = None
    stress_eV_A3: np.ndarray | None = None  # 3x3, ASE sign convention
    gaps_eV: dict[str, float] = field(default_factory=dict)

    def apply_to(self, atoms: Atoms) -> Atoms:
        """Copy of ``atoms`` (positions and metadata kept) carrying these labels under contract keys."""
        out = atoms.copy()
        out.calc = None
        if self.energy_eV is not None:
            out.info[ENERGY_KEY] = float(self.energy_eV)
        if self.forces_eV_A is not None:
            out.arrays[FORCES_KEY] = np.asarray(self.forces_eV_A, dtype=float).reshape(len(atoms), 3)
        if self.stress_eV_A3 is not None:
            out.info[STRESS_KEY] = full_stress(self.stress_eV_A3)
        for fidelity, gap in self.gaps_eV.items():
            out.info[GAP_PREFIX + fidelity] = float(gap)
        return out


def full_stress(stress: np.ndarray) -> np.ndarray:
    """3x3 stress from Voigt (xx, yy, zz, yz, xz, xy) or 3x3 input."""
    stress = np.asarray(stress, dtype=float)
    if stress.shape == (6,):
        xx, yy, zz, yz, xz, xy = stress
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    return stress.reshape(3, 3)


class Labeller(ABC):
    """A reference calculation. ``fidelity`` names the gap written as gap_<fidelity>, and the
    fidelity whose energy, forces and stress become the REF_ keys; ``optional`` names extra fidelities
    computed only on request (e.g. a hybrid gap on a subset)."""

    fidelity: str
    optional: tuple[str, ...] = ()

    @abstractmethod
    def settings(self) -> dict[str, dict]:
        """Label settings per fidelity that this labeller writes (recorded with the dataset)."""

    @abstractmethod
    def calculator(self, atoms: Atoms) -> Calculator:
        """An ASE calculator with this labeller's settings (for phonopy displacements, relaxations)."""

    @abstractmethod
    def label(self, atoms: Atoms, extras: frozenset[str] = frozenset()) -> Labels:
        """Labels of ``atoms``; ``extras`` is a subset of ``optional`` to compute as well."""
