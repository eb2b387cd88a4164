"""Any ASE calculator (named by Hydra ``_target_``) as a labeller for energy, forces and stress."""

from __future__ import annotations

from typing import Any, Callable

from ase import Atoms
from ase.calculators.calculator import Calculator

from capml.labels.bandgap import ase_calculator_gap
from capml.labels.base import Labeller, Labels


class ASECalculatorLabeller(Labeller):
    """Wraps a calculator factory; with ``gap=True`` the calculator must expose eigenvalues/occupations."""

    def __init__(self, calculator: Callable[[], Calculator], fidelity: str, settings: dict[str, Any] | None = None,
                 gap: bool = False):
        self._factory = calculator
        self.fidelity = fidelity
        self._settings = dict(settings or {})
        self.gap = gap

    def settings(self) -> dict[str, dict]:
        target = getattr(self._factory, "func", self._factory)
        name = f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', repr(target))}"
        kwargs = getattr(self._factory, "keywords", {})
        return {self.fidelity: {"code": "ase", "calculator": name, "parameters": dict(kwargs), **self._settings}}

    def calculator(self, atoms: Atoms) -> Calculator:
        return self._factory()

    def label(self, atoms: Atoms, extras: frozenset[str] = frozenset()) -> Labels:
        atoms = atoms.copy()
        atoms.calc = self.calculator(atoms)
        labels = Labels(
            energy_eV=atoms.get_potential_energy(),
            forces_eV_A=atoms.get_forces(),
            stress_eV_A3=atoms.get_stress(voigt=False) if atoms.pbc.all() else None,
        )
        if self.gap:
            labels.gaps_eV[self.fidelity] = ase_calculator_gap(atoms.calc).gap_eV
        return labels
