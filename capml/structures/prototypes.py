"""Cubic A3BX anti-perovskites (e.g. Ag3SBr, Ag3SI) and their mixed-halide supercells."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from ase import Atoms

from capml.errors import InputError

# PBEsol lattice constants (Å) of the cubic end members used by default.
DEFAULT_LATTICE_CONSTANTS = {"Ag3SBr": 4.793, "Ag3SI": 4.869}


def antiperovskite(a_site: str, b_site: str, x_site: str, lattice_constant: float) -> Atoms:
    """Five-atom cubic Pm-3m A3BX cell: B at the body centre inside an A6 octahedron, X at the corner.

    Atom order: X, B, A, A, A (the halide first, so its sublattice indices are easy to find).
    """
    if lattice_constant <= 0:
        raise InputError(f"lattice_constant={lattice_constant}: expected a positive length in Å")
    scaled = [
        (0.0, 0.0, 0.0),  # X
        (0.5, 0.5, 0.5),  # B
        (0.0, 0.5, 0.5),  # A (face centres)
        (0.5, 0.0, 0.5),
        (0.5, 0.5, 0.0),
    ]
    return Atoms(
        symbols=[x_site, b_site, a_site, a_site, a_site],
        scaled_positions=scaled,
        cell=np.eye(3) * lattice_constant,
        pbc=True,
    )


def vegard_lattice_constant(x: float, a_end_x1: float, a_end_x0: float) -> float:
    """Vegard's law: a(x) = x a(x=1) + (1 - x) a(x=0)."""
    if not 0.0 <= x <= 1.0:
        raise InputError(f"x={x}: expected a composition between 0 and 1")
    return x * a_end_x1 + (1.0 - x) * a_end_x0


def mixed_halide_supercell(
    a_site: str,
    b_site: str,
    halides: Sequence[str],
    lattice_constants: Mapping[str, float],
    supercell: Sequence[int],
    occupation: Sequence[bool] | None = None,
) -> Atoms:
    """Supercell of the A3BX cell with halide ``halides[0]`` where ``occupation`` is True, else ``halides[1]``.

    The lattice constant follows Vegard's law between the two end members. ``occupation`` runs over the
    halide sites of the supercell in order (see :func:`halide_sites`); None puts ``halides[1]`` everywhere.
    """
    first, second = halides
    for name in (first, second):
        if name not in lattice_constants:
            raise InputError(f"lattice_constants: no entry for '{name}' (expected one per end member, in Å)")
    template = antiperovskite(a_site, b_site, second, 1.0).repeat(tuple(int(n) for n in supercell))
    sites = halide_sites(template, second)
    occupation = np.zeros(len(sites), bool) if occupation is None else np.asarray(occupation, bool)
    if occupation.shape != (len(sites),):
        raise InputError(f"occupation has {occupation.size} entries, expected one per halide site ({len(sites)})")
    x = occupation.mean()
    a = vegard_lattice_constant(x, lattice_constants[first], lattice_constants[second])
    symbols = template.get_chemical_symbols()
    for site, is_first in zip(sites, occupation):
        symbols[site] = first if is_first else second
    atoms = template.copy()
    atoms.set_chemical_symbols(symbols)
    atoms.set_cell(template.cell * a, scale_atoms=True)
    atoms.info["x"] = float(x)
    return atoms


def halide_sites(atoms: Atoms, halide: str | Sequence[str]) -> np.ndarray:
    """Indices of the atoms carrying any of the given halide symbols."""
    names = {halide} if isinstance(halide, str) else set(halide)
    return np.flatnonzero([s in names for s in atoms.get_chemical_symbols()])
