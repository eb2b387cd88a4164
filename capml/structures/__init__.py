"""Structures: prototypes, supercells, solid-solution decorations, thermal displacements, samplers."""

from capml.structures.decorations import Decoration, inequivalent_decorations, site_permutations
from capml.structures.prototypes import antiperovskite, mixed_halide_supercell, vegard_lattice_constant
from capml.structures.thermal import (
    harmonic_phonons,
    load_phonons,
    mixed_force_constants,
    thermal_displacements,
    uniform_rattle,
)

__all__ = [
    "Decoration",
    "antiperovskite",
    "harmonic_phonons",
    "inequivalent_decorations",
    "load_phonons",
    "mixed_force_constants",
    "mixed_halide_supercell",
    "site_permutations",
    "thermal_displacements",
    "uniform_rattle",
    "vegard_lattice_constant",
]
