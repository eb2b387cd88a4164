from math import comb

import numpy as np
import pytest

from capml.structures.decorations import burnside_orbit_count, inequivalent_decorations, site_permutations
from capml.structures.prototypes import antiperovskite, decorated_supercell, mixed_sites

LATTICE = {"Br": 4.793, "I": 4.869}


def x_site_perms(supercell):
    parent = decorated_supercell(antiperovskite("Ag", "S", "I", 1.0), "I", ["Br", "I"], LATTICE, supercell)
    return site_permutations(parent, mixed_sites(parent, ["Br", "I"]))


def test_2x2x2_has_22_inequivalent_decorations_against_burnside():
    perms = x_site_perms([2, 2, 2])
    counts = []
    for k in range(9):
        decorations = inequivalent_decorations(perms, k)
        assert len(decorations) == burnside_orbit_count(perms, k)
        assert sum(d.multiplicity for d in decorations) == comb(8, k)
        assert all(sum(d.occupation) == k for d in decorations)
        counts.append(len(decorations))
    assert counts == [1, 1, 3, 3, 6, 3, 3, 1, 1]
    assert sum(counts) == 22


def test_2x2x1_counts_against_burnside():
    perms = x_site_perms([2, 2, 1])
    for k in range(5):
        decorations = inequivalent_decorations(perms, k)
        assert len(decorations) == burnside_orbit_count(perms, k)
        assert sum(d.multiplicity for d in decorations) == comb(4, k)


def test_decorations_are_pairwise_inequivalent():
    perms = x_site_perms([2, 2, 2])
    decorations = inequivalent_decorations(perms, 4)
    orbits = []
    for d in decorations:
        occ = np.array(d.occupation)
        orbits.append({tuple(occ[p]) for p in perms})
    for i in range(len(orbits)):
        for j in range(i + 1, len(orbits)):
            assert not orbits[i] & orbits[j]
        assert len(orbits[i]) == decorations[i].multiplicity


def test_random_sampling_past_threshold_is_seeded_and_keeps_exact_multiplicities():
    perms = x_site_perms([2, 2, 2])
    exact = {d.occupation: d.multiplicity for d in inequivalent_decorations(perms, 4)}
    sampled = inequivalent_decorations(perms, 4, max_enumerate=10, n_random=200, seed=3)
    again = inequivalent_decorations(perms, 4, max_enumerate=10, n_random=200, seed=3)
    assert [d.occupation for d in sampled] == [d.occupation for d in again]
    # canonical representatives are the same whichever way they were found
    for d in sampled:
        assert exact[d.occupation] == d.multiplicity


@pytest.mark.parametrize("k", [3, 13])
def test_3x3x3_random_mode_multiplicities_divide_group_order(k):
    perms = x_site_perms([3, 3, 3])
    decorations = inequivalent_decorations(perms, k, max_enumerate=1000, n_random=300, seed=0)
    assert decorations
    for d in decorations:
        assert len(perms) % d.multiplicity == 0
        assert d.multiplicity <= comb(27, k)


@pytest.mark.parametrize("name", ["diamond_SiGe", "rocksalt_NaK_Cl"])
def test_other_structure_types_against_burnside(name):
    """The enumeration is not tied to the anti-perovskite: (Si,Ge) on every site of the 8-atom diamond cell, and
    (Na,K) on the cation sites of a 2x2x2 rock-salt primitive cell (8 of 16 atoms), counted against Burnside's
    lemma on the same symmetry group, every multiplicity summing to C(n, k)."""
    from ase.build import bulk

    if name == "diamond_SiGe":
        atoms = bulk("Si", "diamond", a=5.5, cubic=True)
        sites = np.arange(len(atoms))
    else:
        atoms = bulk("NaCl", "rocksalt", a=5.6).repeat((2, 2, 2))
        sites = np.flatnonzero(atoms.numbers == 11)
    perms = site_permutations(atoms, sites)
    n = len(sites)
    assert n == 8 and len(perms) > 1
    for k in range(n + 1):
        decorations = inequivalent_decorations(perms, k)
        assert len(decorations) == burnside_orbit_count(perms, k)
        assert sum(d.multiplicity for d in decorations) == comb(n, k)
