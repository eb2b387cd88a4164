"""The batched neighbour list against vesin (the library torch-sim uses per system), and the MACE model built on
it against torch-sim's own per-system loop: the same pairs, the same energies, forces and stresses."""

import numpy as np
import pytest
import torch
from vesin import NeighborList

from capml.simulate.neighbours import VerletList, batched_neighbour_list
from capml.structures.prototypes import antiperovskite


def batch():
    cells = [antiperovskite("Ag", "S", "Br", 4.79).repeat((2, 2, 2)), antiperovskite("Ag", "S", "I", 4.87).repeat((2, 2, 2)),
             antiperovskite("Ag", "S", "I", 4.87).repeat((2, 1, 1)), antiperovskite("Ag", "S", "Br", 4.79)]
    for k, atoms in enumerate(cells):
        atoms.rattle(0.15, seed=k)
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.03 * np.random.default_rng(k).normal(size=(3, 3))),
                       scale_atoms=True)  # triclinic
    return cells


def tensors(cells):
    positions = torch.tensor(np.concatenate([a.positions for a in cells]))
    lattice = torch.tensor(np.stack([a.cell.array for a in cells]))
    system_idx = torch.tensor(np.concatenate([[k] * len(a) for k, a in enumerate(cells)]))
    return positions, lattice, system_idx


def pairs_by_system(edges, shifts, system_idx, offsets):
    out = {}
    for (i, j), s in zip(edges.T.tolist(), shifts.round().long().tolist()):
        k = int(system_idx[i])
        out.setdefault(k, []).append((i - offsets[k], j - offsets[k], tuple(s)))
    return {k: sorted(v) for k, v in out.items()}


@pytest.mark.parametrize("cutoff", [3.0, 5.0, 6.5])
@pytest.mark.parametrize("unwrapped", [False, True])
def test_same_pairs_as_vesin(cutoff, unwrapped):
    cells = batch()
    if unwrapped:  # MD positions drift out of the cell: atoms a few cells away give the same pairs
        for k, atoms in enumerate(cells):
            atoms.positions[0] += 2 * atoms.cell[0] - atoms.cell[1]
            atoms.positions[-1] -= 3 * atoms.cell[2]
    positions, lattice, system_idx = tensors(cells)
    offsets = np.cumsum([0] + [len(a) for a in cells])
    edges, shifts = batched_neighbour_list(positions, lattice, system_idx, cutoff, max_pairs_per_chunk=30_000)
    got = pairs_by_system(edges, shifts, system_idx, offsets)
    for k, atoms in enumerate(cells):
        i, j, S = NeighborList(cutoff=cutoff, full_list=True).compute(
            points=atoms.positions, box=atoms.cell.array, periodic=True, quantities="ijS")
        expected = sorted(zip(i.tolist(), j.tolist(), map(tuple, S.tolist())))
        assert got.get(k, []) == expected


def test_verlet_skin_reuses_and_rebuilds():
    cells = batch()
    positions, lattice, system_idx = tensors(cells)
    verlet = VerletList(5.0, skin=1.0)
    first = verlet(positions, lattice, system_idx)
    small = positions + 0.2 * torch.randn(positions.shape, generator=torch.Generator().manual_seed(1)).clamp(-1, 1)
    second = verlet(small, lattice, system_idx)
    fresh = batched_neighbour_list(small, lattice, system_idx, 5.0)
    assert verlet.rebuilds == 1
    key = lambda e, s: sorted(zip(*e.tolist(), map(tuple, s.round().long().tolist())))  # noqa: E731
    assert key(*second) == key(*fresh) and key(*first) != key(*fresh)
    verlet(positions + 0.6, lattice, system_idx)  # every atom 1.04 Å away: past half the skin
    assert verlet.rebuilds == 2


def test_mace_with_the_batched_list_equals_the_per_system_loop(mace_model_path):
    import torch_sim as ts

    from capml.simulate.mlip import batched_model

    cells = batch()
    state = ts.io.atoms_to_state(cells, torch.device("cpu"), torch.float64)
    loop = batched_model(mace_model_path, "float64", compute_stress=True, neighbour_list="per_system")(state)
    ours = batched_model(mace_model_path, "float64", compute_stress=True, neighbour_list="batched")(state)
    for key in ("energy", "forces", "stress"):
        np.testing.assert_allclose(ours[key].numpy(), loop[key].numpy(), rtol=1e-10, atol=1e-10)



def test_the_same_atoms_split_into_other_systems_get_their_own_energies(mace_model_path):
    """[5-atom cell, 10-atom cell], [10, 5], [5, 5, 5]: the same atomic numbers in a row, split into systems
    differently (the model once kept the first split's system boundaries while the atomic numbers stayed the same,
    and gave 2 energies for 3 systems)."""
    import torch_sim as ts

    from capml.simulate.mlip import batched_model

    unit = antiperovskite("Ag", "S", "Br", 4.79)
    double = unit.repeat((2, 1, 1))
    model = batched_model(mace_model_path, "float64", neighbour_list="batched")
    energy = {len(a): float(model(ts.io.atoms_to_state([a], torch.device("cpu"), torch.float64))["energy"][0])
              for a in (unit, double)}
    for order in ([unit, double], [double, unit], [unit, unit, unit]):
        out = model(ts.io.atoms_to_state(order, torch.device("cpu"), torch.float64))
        np.testing.assert_allclose(out["energy"].numpy(), [energy[len(a)] for a in order], rtol=1e-12)

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_list_on_cuda_equals_the_cpu_list():
    cells = batch()
    positions, lattice, system_idx = tensors(cells)
    cpu = batched_neighbour_list(positions, lattice, system_idx, 5.0)
    gpu = batched_neighbour_list(positions.cuda(), lattice.cuda(), system_idx.cuda(), 5.0)
    key = lambda e, s: sorted(zip(*e.cpu().tolist(), map(tuple, s.cpu().round().long().tolist())))  # noqa: E731
    assert key(*cpu) == key(*gpu)
