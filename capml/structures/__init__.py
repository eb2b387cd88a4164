"""Structures: prototypes, supercells, solid-solution decorations, thermal displacements, samplers."""

from capml.phonons import harmonic_phonons, load_phonons  # kept here for scripts that import them from structures
from capml.structures.decorations import Decoration, inequivalent_decorations, site_permutations
from capml.structures.prototypes import (
    antiperovskite,
    decorated_supercell,
    mixed_sites,
    perovskite,
    vegard_lattice_constant,
)
from capml.structures.system import SolidSolution, load_system
from capml.structures.thermal import mixed_force_constants, thermal_displacements, uniform_rattle

__all__ = [
    "Decoration",
    "SolidSolution",
    "antiperovskite",
    "decorated_supercell",
    "harmonic_phonons",
    "inequivalent_decorations",
    "load_phonons",
    "load_system",
    "mixed_force_constants",
    "mixed_sites",
    "perovskite",
    "site_permutations",
    "thermal_displacements",
    "uniform_rattle",
    "vegard_lattice_constant",
]
