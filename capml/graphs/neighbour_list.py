"""Periodic radius neighbour list: every pair (i, j, image shift) with |r_j + S.cell - r_i| < cutoff.

Backed by vesin (a cell-list neighbour list in C++); bench/bench_graphs.py compares it against matscipy
and a naive explicit-supercell loop. Full list: each pair appears as (i, j) and (j, i); an atom's own
periodic images are neighbours when closer than the cutoff; the zero-shift self pair is excluded.
"""

from __future__ import annotations

import threading

import numpy as np
from ase import Atoms

from capml.errors import InputError


_local = threading.local()


def _calculator(cutoff_A: float):
    """vesin calculator for ``cutoff_A``, one per thread (it reuses internal buffers, so it is not
    thread-safe); building one costs as much as a 40-atom neighbour search, so it is kept."""
    import vesin

    cache = _local.__dict__.setdefault("calculators", {})
    if cutoff_A not in cache:
        cache[cutoff_A] = vesin.NeighborList(cutoff=cutoff_A, full_list=True)
    return cache[cutoff_A]


def periodic_neighbours(
    atoms: Atoms, cutoff_A: float, where: str = "<atoms>"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, shifts, distances_A) of ``atoms``; shifts are integer cell vectors: r_ij = r_j - r_i + S @ cell."""
    if cutoff_A <= 0:
        raise InputError(f"cutoff_A={cutoff_A}: expected a positive distance in Å")
    pbc = atoms.pbc
    box = atoms.cell.array
    if pbc.any() and abs(np.linalg.det(box)) < 1e-9:
        raise InputError(f"{where}: periodic structure without a cell (volume 0); expected a 3x3 lattice in Å")
    i, j, shifts, distances = _calculator(float(cutoff_A)).compute(
        points=atoms.positions, box=box, periodic=pbc, quantities="ijSd"
    )
    return i.astype(np.int64), j.astype(np.int64), shifts.astype(np.int64), distances
