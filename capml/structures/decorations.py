"""Symmetry-inequivalent decorations of a sublattice (two species over the mixed sites of a supercell).

The space-group operations of the undecorated supercell (from spglib) act on the sublattice as site
permutations. Two decorations are equivalent when one operation maps one onto the other; the
multiplicity of a decoration is the size of its orbit, so the multiplicities of one composition add
up to C(n, k). Past ``max_enumerate`` arrangements per composition, a seeded random sample of (by default 100)
arrangements is reduced to its distinct orbits instead (each still with its exact multiplicity).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb
from itertools import combinations

import numpy as np
import spglib
from ase import Atoms

from capml.errors import InputError


@dataclass(frozen=True)
class Decoration:
    """One symmetry-inequivalent decoration: ``occupation[i]`` is True where site i holds the minority."""

    n_sites: int
    n_occupied: int
    occupation: tuple[bool, ...]
    multiplicity: int
    index: int  # position among the decorations of this composition, lowest canonical code first

    @property
    def x(self) -> float:
        return self.n_occupied / self.n_sites

    @property
    def config_id(self) -> str:
        return f"k{self.n_occupied}of{self.n_sites}_d{self.index}"


def site_permutations(atoms: Atoms, sites: np.ndarray, symprec: float = 1e-4) -> np.ndarray:
    """(n_ops, n_sites) array: operation g sends sublattice site i to site perms[g, i].

    ``atoms`` must be the undecorated structure (every sublattice site the same species) so that
    spglib sees the full symmetry, including the supercell's pure translations.
    """
    sites = np.asarray(sites)
    cell = (atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers)
    symmetry = spglib.get_symmetry(cell, symprec=symprec)
    if symmetry is None:
        raise InputError("spglib could not determine the symmetry of the parent structure")
    frac = atoms.get_scaled_positions()[sites]
    perms = []
    for rotation, translation in zip(symmetry["rotations"], symmetry["translations"]):
        image = frac @ rotation.T + translation
        delta = image[:, None, :] - frac[None, :, :]
        delta -= np.round(delta)
        match = np.linalg.norm(delta @ atoms.cell[:], axis=-1) < 10 * symprec * max(1.0, atoms.cell.lengths().max())
        if not np.all(match.sum(axis=1) == 1):
            raise InputError("a symmetry operation does not map the sublattice onto itself; check `sites`")
        perms.append(match.argmax(axis=1))
    return np.unique(np.array(perms), axis=0)


def _canonical_forms(configs: np.ndarray, perms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical code (lexicographically smallest image over the group), that image, and the orbit size.

    configs: (M, n) bool. Images under g are configs[:, perms[g]]. Codes are packed bytes compared
    as big-endian words so any sublattice size works.
    """
    images = configs[:, perms]  # (M, n_ops, n)
    packed = np.ascontiguousarray(np.packbits(images, axis=-1))  # (M, n_ops, n_bytes)
    flat = packed.view(np.dtype((np.void, packed.shape[-1])))[..., 0]  # (M, n_ops)
    canonical = np.empty(len(configs), dtype=flat.dtype)
    representative = np.empty_like(configs)
    orbit = np.empty(len(configs), dtype=int)
    for m in range(len(configs)):
        distinct, first = np.unique(flat[m], return_index=True)
        canonical[m] = distinct[0]
        representative[m] = images[m, first[0]]
        orbit[m] = len(distinct)
    return canonical, representative, orbit


def _all_configs(n: int, k: int) -> np.ndarray:
    configs = np.zeros((comb(n, k), n), dtype=bool)
    for row, chosen in enumerate(combinations(range(n), k)):
        configs[row, list(chosen)] = True
    return configs


def _random_configs(n: int, k: int, count: int, rng: np.random.Generator) -> np.ndarray:
    keys = rng.random((count, n))
    chosen = np.argsort(keys, axis=1)[:, :k]
    configs = np.zeros((count, n), dtype=bool)
    np.put_along_axis(configs, chosen, True, axis=1)
    return configs


def inequivalent_decorations(
    perms: np.ndarray,
    n_occupied: int,
    max_enumerate: int = 20000,
    n_random: int = 100,
    seed: int = 0,
) -> list[Decoration]:
    """Distinct decorations with ``n_occupied`` minority atoms on a sublattice with permutations ``perms``.

    Enumerates all C(n, k) arrangements when there are at most ``max_enumerate``; otherwise draws
    ``n_random`` seeded random arrangements and keeps their distinct orbits (about a hundred structures to relax per
    composition by default; each with the exact size of its orbit as multiplicity).
    """
    n = perms.shape[1]
    if not 0 <= n_occupied <= n:
        raise InputError(f"n_occupied={n_occupied}: expected 0..{n}")
    if comb(n, n_occupied) <= max_enumerate:
        configs = _all_configs(n, n_occupied)
    else:
        configs = _random_configs(n, n_occupied, n_random, np.random.default_rng([seed, n, n_occupied]))
    canonical, representative, orbit = _canonical_forms(configs, perms)
    _, first = np.unique(canonical, return_index=True)  # sorted by canonical code
    decorations = []
    for index, row in enumerate(first):
        decorations.append(
            Decoration(
                n_sites=n,
                n_occupied=n_occupied,
                occupation=tuple(bool(b) for b in representative[row]),
                multiplicity=int(orbit[row]),
                index=index,
            )
        )
    return decorations


def burnside_orbit_count(perms: np.ndarray, k: int) -> int:
    """Orbits of k-subsets of the sites under the permutation group ``perms``, by Burnside's lemma: the mean over
    group elements of the k-subsets each fixes (unions of its cycles). Independent of the orbit enumeration
    above, so it checks it (tests) and counts where enumerating would be too slow (bench)."""
    total = 0
    for perm in np.asarray(perms):
        seen, cycles = np.zeros(len(perm), bool), []
        for start in range(len(perm)):
            length, j = 0, start
            while not seen[j]:
                seen[j], j, length = True, perm[j], length + 1
            if length:
                cycles.append(length)
        ways = [1] + [0] * k  # subset-sum count over cycle lengths
        for length in cycles:
            for s in range(k, length - 1, -1):
                ways[s] += ways[s - length]
        total += ways[k]
    assert total % len(perms) == 0, "Burnside's lemma: the fixed-point total is a multiple of the group order"
    return total // len(perms)
