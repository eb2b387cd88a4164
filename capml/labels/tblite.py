"""GFN2-xTB labels from tblite: energy, forces, stress and the Γ-point gap."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.units import Bohr, Hartree, kB

from capml.labels.bandgap import band_gap, normalised_occupations
from capml.labels.base import Labeller, Labels


class TBLiteLabeller(Labeller):
    """GFN2-xTB under periodic boundaries (Γ only). GFN1-xTB gives broken forces for the bundled system: not offered."""

    def __init__(self, fidelity: str = "gfn2", accuracy: float = 1.0, electronic_temperature_K: float = 300.0,
                 max_iterations: int = 250):
        self.fidelity = fidelity
        self.accuracy = accuracy
        self.electronic_temperature_K = electronic_temperature_K
        self.max_iterations = max_iterations

    def settings(self) -> dict[str, dict]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            tblite_version = version("tblite")
        except PackageNotFoundError:  # a source build without metadata
            tblite_version = "unknown"
        return {
            self.fidelity: {
                "code": "tblite",
                "version": tblite_version,
                "method": "GFN2-xTB",
                "kpts": "gamma",
                "accuracy": self.accuracy,
                "electronic_temperature_K": self.electronic_temperature_K,
                "max_iterations": self.max_iterations,
            }
        }

    def calculator(self, atoms: Atoms):
        from tblite.ase import TBLite

        return TBLite(method="GFN2-xTB", accuracy=self.accuracy, electronic_temperature=self.electronic_temperature_K,
                      max_iterations=self.max_iterations, verbosity=0)

    def label(self, atoms: Atoms, extras: frozenset[str] = frozenset()) -> Labels:
        from tblite.interface import Calculator

        periodic = atoms.pbc.all()
        calc = Calculator(
            "GFN2-xTB",
            atoms.numbers,
            atoms.positions / Bohr,
            lattice=np.array(atoms.cell[:]) / Bohr if periodic else None,
            periodic=np.array(atoms.pbc) if periodic else None,
        )
        calc.set("verbosity", 0)
        calc.set("accuracy", self.accuracy)
        calc.set("temperature", self.electronic_temperature_K * kB / Hartree)
        calc.set("max-iter", self.max_iterations)
        result = calc.singlepoint()
        eigs = np.asarray(result.get("orbital-energies")) * Hartree
        occs = np.asarray(result.get("orbital-occupations"))
        eigs = eigs.reshape(-1, 1, eigs.shape[-1])
        occs = normalised_occupations(occs.reshape(eigs.shape))
        stress = result.get("virial") * Hartree / atoms.get_volume() if periodic else None
        return Labels(
            energy_eV=float(result.get("energy")) * Hartree,
            forces_eV_A=-np.asarray(result.get("gradient")) * Hartree / Bohr,
            stress_eV_A3=stress,
            gaps_eV={self.fidelity: band_gap(eigs, occs).gap_eV},
        )
