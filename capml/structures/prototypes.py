"""Prototype parent cells (cubic anti-perovskite A3BX, cubic perovskite ABX3) and decorated supercells of any
parent: one sublattice shared by two species, the lattice constant following Vegard's law."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from ase import Atoms

from capml.errors import InputError


def _cubic_cell(symbols: Sequence[str], scaled: Sequence[tuple[float, float, float]], lattice_constant: float) -> Atoms:
    if lattice_constant <= 0:
        raise InputError(f"lattice_constant={lattice_constant}: expected a positive length in Å")
    return Atoms(symbols=list(symbols), scaled_positions=scaled, cell=np.eye(3) * lattice_constant, pbc=True)


def antiperovskite(a_site: str, b_site: str, x_site: str, lattice_constant: float) -> Atoms:
    """Five-atom cubic Pm-3m A3BX cell: B at the body centre inside an A6 octahedron, X at the corner.

    Atom order: X, B, A, A, A (the X site first, so its sublattice indices are easy to find).
    """
    scaled = [
        (0.0, 0.0, 0.0),  # X
        (0.5, 0.5, 0.5),  # B
        (0.0, 0.5, 0.5),  # A (face centres)
        (0.5, 0.0, 0.5),
        (0.5, 0.5, 0.0),
    ]
    return _cubic_cell([x_site, b_site, a_site, a_site, a_site], scaled, lattice_constant)


def perovskite(a_site: str, b_site: str, x_site: str, lattice_constant: float) -> Atoms:
    """Five-atom cubic Pm-3m ABX3 cell: B at the origin inside an X6 octahedron (X at the edge centres, bridging
    two B), A at the body centre.

    Atom order: X, X, X, B, A (the X sites first, as in :func:`antiperovskite`).
    """
    scaled = [
        (0.5, 0.0, 0.0),  # X
        (0.0, 0.5, 0.0),
        (0.0, 0.0, 0.5),
        (0.0, 0.0, 0.0),  # B
        (0.5, 0.5, 0.5),  # A
    ]
    return _cubic_cell([x_site, x_site, x_site, b_site, a_site], scaled, lattice_constant)


def vegard_lattice_constant(x: float, a_end_x1: float, a_end_x0: float) -> float:
    """Vegard's law: a(x) = x a(x=1) + (1 - x) a(x=0)."""
    if not 0.0 <= x <= 1.0:
        raise InputError(f"x={x}: expected a composition between 0 and 1")
    return x * a_end_x1 + (1.0 - x) * a_end_x0


def decorated_supercell(
    primitive: Atoms,
    mixed_site: str,
    species: Sequence[str],
    lattice_constants: Mapping[str, float] | None,
    supercell: Sequence[int],
    occupation: Sequence[bool] | None = None,
) -> Atoms:
    """Supercell of ``primitive`` with ``species[0]`` on the ``mixed_site`` sites where ``occupation`` is True, else
    ``species[1]``.

    ``occupation`` runs over the mixed sites of the supercell in order (see :func:`mixed_sites`); None puts
    ``species[1]`` everywhere. With ``lattice_constants`` (Å per species) ``primitive`` is in units of the lattice
    constant, which follows Vegard's law between the two end members; None keeps the cell of ``primitive`` (Å).
    """
    first, second = species
    if lattice_constants is not None:
        for name in (first, second):
            if name not in lattice_constants:
                raise InputError(f"lattice_constants: no entry for '{name}' (expected one per end member, in Å)")
    template = primitive.repeat(tuple(int(n) for n in supercell))
    sites = mixed_sites(template, mixed_site)
    occupation = np.zeros(len(sites), bool) if occupation is None else np.asarray(occupation, bool)
    if occupation.shape != (len(sites),):
        raise InputError(f"occupation has {occupation.size} entries, expected one per mixed site ({len(sites)})")
    x = occupation.mean()
    symbols = template.get_chemical_symbols()
    for site, is_first in zip(sites, occupation):
        symbols[site] = first if is_first else second
    atoms = template.copy()
    atoms.set_chemical_symbols(symbols)
    if lattice_constants is not None:
        a = vegard_lattice_constant(x, lattice_constants[first], lattice_constants[second])
        atoms.set_cell(template.cell * a, scale_atoms=True)
    atoms.info["x"] = float(x)
    return atoms


def mixed_sites(atoms: Atoms, symbols: str | Sequence[str]) -> np.ndarray:
    """Indices of the atoms carrying any of the given chemical symbols (a sublattice)."""
    names = {symbols} if isinstance(symbols, str) else set(symbols)
    return np.flatnonzero([s in names for s in atoms.get_chemical_symbols()])
