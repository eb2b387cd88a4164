"""The periodic radius graph against two independent neighbour lists: ASE's and a brute-force image loop."""

import itertools

import numpy as np
import pytest
from ase import Atoms
from ase.neighborlist import neighbor_list

from capml.errors import InputError
from capml.graphs.neighbour_list import periodic_neighbours
from capml.structures.prototypes import antiperovskite
from capml.structures.system import load_system
from capml.structures.thermal import uniform_rattle


def triclinic_cell() -> Atoms:
    rng = np.random.default_rng(3)
    cell = np.array([[5.1, 0.0, 0.0], [1.9, 4.7, 0.0], [-1.2, 1.4, 4.4]])
    return Atoms("Ag3SBr", scaled_positions=rng.random((5, 3)), cell=cell, pbc=True)


STRUCTURES = {
    "40-atom rattled Ag3SBr(x)I(1-x)": lambda: uniform_rattle(load_system("ag3sbri").build(load_system("ag3sbri").decorations(3)[1]), 0.2, 0),
    "5-atom cell smaller than the cutoff": lambda: antiperovskite("Ag", "S", "Br", 4.793),
    "skewed triclinic cell": triclinic_cell,
}


def edge_set(i, j, shifts):
    return set(zip(i.tolist(), j.tolist(), map(tuple, shifts.tolist())))


def brute_force(atoms: Atoms, cutoff: float):
    """Every image within the range that can reach the cutoff: n_k = ceil(cutoff / plane spacing_k)."""
    cell = atoms.cell[:]
    spacing = atoms.get_volume() / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    reach = np.ceil(cutoff / spacing).astype(int) + 1
    edges, distances = set(), {}
    for shift in itertools.product(*(range(-n, n + 1) for n in reach)):
        vectors = atoms.positions[None, :, :] + np.asarray(shift) @ cell - atoms.positions[:, None, :]
        d = np.linalg.norm(vectors, axis=-1)
        for a, b in zip(*np.nonzero(d < cutoff)):
            if a == b and not any(shift):
                continue
            edges.add((int(a), int(b), shift))
            distances[(int(a), int(b), shift)] = d[a, b]
    return edges, distances


@pytest.mark.parametrize("name", STRUCTURES)
@pytest.mark.parametrize("cutoff", [3.5, 5.5])
def test_edges_match_ase_neighbour_list(name, cutoff):
    atoms = STRUCTURES[name]()
    i, j, shifts, d = periodic_neighbours(atoms, cutoff)
    ref_i, ref_j, ref_shifts, ref_d = neighbor_list("ijSd", atoms, cutoff)
    assert edge_set(i, j, shifts) == edge_set(ref_i, ref_j, ref_shifts)
    ours = dict(zip(zip(i.tolist(), j.tolist(), map(tuple, shifts.tolist())), d))
    ref = dict(zip(zip(ref_i.tolist(), ref_j.tolist(), map(tuple, ref_shifts.tolist())), ref_d))
    assert np.allclose([ours[k] for k in ref], list(ref.values()), atol=1e-10)


@pytest.mark.parametrize("name", STRUCTURES)
def test_edges_match_brute_force_image_loop(name):
    atoms = STRUCTURES[name]()
    i, j, shifts, d = periodic_neighbours(atoms, 5.5)
    edges, distances = brute_force(atoms, 5.5)
    assert edge_set(i, j, shifts) == edges
    ours = dict(zip(zip(i.tolist(), j.tolist(), map(tuple, shifts.tolist())), d))
    assert np.allclose([ours[k] for k in edges], [distances[k] for k in edges], atol=1e-10)


def test_small_cell_includes_own_images():
    """a = 4.79 Å < 5.5 Å: each atom sees its own six nearest images, and the list is symmetric."""
    atoms = antiperovskite("Ag", "S", "Br", 4.793)
    i, j, shifts, d = periodic_neighbours(atoms, 5.5)
    own = (i == j)
    assert np.all(np.bincount(i[own], minlength=5) == 6)
    assert np.allclose(d[own], 4.793)
    assert edge_set(i, j, shifts) == edge_set(j, i, -shifts)


def test_bad_cutoff_and_missing_cell_raise_input_error():
    with pytest.raises(InputError, match="cutoff"):
        periodic_neighbours(antiperovskite("Ag", "S", "Br", 4.8), 0.0)
    with pytest.raises(InputError, match="frame 7.*cell"):
        periodic_neighbours(Atoms("Ag2", positions=[[0, 0, 0], [1, 0, 0]], pbc=True), 5.5, where="x.extxyz: frame 7")
