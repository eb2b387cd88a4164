"""One neighbour-list pass for a batch of periodic cells, on the device of the positions, and a MACE model for
torch-sim that uses it (torch-sim 0.3's ``MaceModel`` builds one vesin list per system in a Python loop, on the
CPU in float64, then copies it over: at 256 systems that loop was 63 % of a model call on a GPU).

The list is a brute force over the periodic images each cell needs (``ceil(cutoff / plane spacing)`` per axis,
the largest over the batch), so it suits the small supercells MD runs here (tens to a few hundred atoms);
systems are processed in chunks to bound memory. A Verlet skin keeps the candidate pairs while no atom has moved
more than half of it; every call still keeps only the pairs within the cutoff (a cheap masked distance), so the
model sees exactly the pairs a fresh list gives.
"""

from __future__ import annotations

import torch


def image_counts(cells: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Periodic images needed along each cell vector, (n_systems, 3): ceil(cutoff / plane spacing)."""
    volume = torch.linalg.det(cells).abs()
    a, b, c = cells[:, 0], cells[:, 1], cells[:, 2]
    areas = torch.stack([torch.linalg.cross(b, c).norm(dim=-1), torch.linalg.cross(c, a).norm(dim=-1),
                         torch.linalg.cross(a, b).norm(dim=-1)], dim=-1)
    return torch.ceil(cutoff / (volume[:, None] / areas)).long()


def batched_neighbour_list(positions: torch.Tensor, cells: torch.Tensor, system_idx: torch.Tensor, cutoff: float,
                           max_pairs_per_chunk: int = 20_000_000) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs (i, j, image) with |r_j + image @ cell - r_i| < cutoff, i != j or image != 0, for every system at once.

    positions (n_atoms, 3), cells (n_systems, 3, 3) row vectors, system_idx (n_atoms,) sorted. Returns
    edge_index (2, n_edges) = (i, j) and unit_shifts (n_edges, 3) (integers as the positions' dtype): the
    convention of mace and torch-sim (vector = r_j - r_i + unit_shifts @ cell).
    """
    positions, cells = positions.detach(), cells.detach()  # the list is integer data: no autograd graph in it
    device, dtype = positions.device, positions.dtype
    n_systems = cells.shape[0]
    # into the cell first (MD positions are not wrapped): the image range assumes it; the offsets go into the shifts
    cell_of_atom = cells[system_idx]
    fractional = torch.linalg.solve(cell_of_atom.transpose(1, 2), positions.unsqueeze(-1)).squeeze(-1)
    offsets_cells = torch.floor(fractional)
    positions = positions - (offsets_cells.unsqueeze(-1) * cell_of_atom).sum(dim=1)
    counts = torch.bincount(system_idx, minlength=n_systems)
    offsets = torch.cumsum(counts, 0) - counts
    reach = image_counts(cells, cutoff).max(dim=0).values
    ranges = [torch.arange(-int(n), int(n) + 1, device=device) for n in reach]
    images = torch.cartesian_prod(*ranges).to(dtype)  # (K, 3)
    pairs_per_system = counts * counts * len(images)
    edges, shifts = [], []
    start = 0
    while start < n_systems:  # chunks of whole systems, at most max_pairs_per_chunk candidates each
        cumulative = torch.cumsum(pairs_per_system[start:], 0)
        stop = start + max(1, int((cumulative <= max_pairs_per_chunk).sum()))
        e, s = _chunk(positions, cells, counts, offsets, images, cutoff, start, stop)
        edges.append(e)
        shifts.append(s)
        start = stop
    edges, shifts = torch.cat(edges, dim=1), torch.cat(shifts, dim=0)
    # r_j - r_i for the given (unwrapped) positions: image + n_i - n_j cells
    return edges, shifts + offsets_cells[edges[0]] - offsets_cells[edges[1]]


def _chunk(positions, cells, counts, offsets, images, cutoff, start, stop):
    device = positions.device
    n = counts[start:stop]
    systems = torch.arange(start, stop, device=device)
    pair_counts = n * n
    system_of_pair = torch.repeat_interleave(systems, pair_counts)
    first_pair = torch.cumsum(pair_counts, 0) - pair_counts
    local = torch.arange(int(pair_counts.sum()), device=device) - torch.repeat_interleave(first_pair, pair_counts)
    size = counts[system_of_pair]
    i = offsets[system_of_pair] + local // size
    j = offsets[system_of_pair] + local % size
    # (pairs, images, 3): r_j - r_i + image @ cell of the pair's system
    shift_vectors = torch.einsum("kd,pde->pke", images, cells[system_of_pair])
    vectors = (positions[j] - positions[i])[:, None, :] + shift_vectors
    keep = (vectors.square().sum(-1) < cutoff * cutoff)
    zero_image = (images == 0).all(dim=1)
    keep &= ~((i == j)[:, None] & zero_image[None, :])
    pair, image = keep.nonzero(as_tuple=True)
    return torch.stack([i[pair], j[pair]]), images[image]


class VerletList:
    """Candidate pairs within cutoff + skin, rebuilt when an atom has moved more than skin / 2 or the cells or
    atoms changed; each call returns the pairs within the cutoff."""

    def __init__(self, cutoff: float, skin: float = 1.0):
        self.cutoff, self.skin = float(cutoff), float(skin)
        self.reference = None
        self.rebuilds = 0

    def __call__(self, positions, cells, system_idx):
        if self._stale(positions, cells, system_idx):
            self.edges, self.unit_shifts = batched_neighbour_list(positions, cells, system_idx,
                                                                  self.cutoff + self.skin)
            self.reference = (positions.detach().clone(), cells.detach().clone(), system_idx.clone())
            self.rebuilds += 1
        i, j = self.edges
        with torch.no_grad():  # a mask only: the model builds its own vectors (and their gradients) from the pairs
            shift_vectors = (self.unit_shifts[:, :, None] * cells[system_idx[i]]).sum(dim=1)  # image @ cell
            vectors = positions[j] - positions[i] + shift_vectors
        keep = vectors.square().sum(-1) < self.cutoff * self.cutoff
        return self.edges[:, keep], self.unit_shifts[keep]

    def _stale(self, positions, cells, system_idx) -> bool:
        if self.reference is None or self.skin <= 0:
            return True
        ref_positions, ref_cells, ref_idx = self.reference
        if ref_positions.shape != positions.shape or not torch.equal(ref_idx, system_idx):
            return True
        if not torch.allclose(ref_cells, cells):
            return True
        moved = (positions.detach() - ref_positions).square().sum(-1).max()
        return bool(moved > (self.skin / 2) ** 2)


def batched_mace_model(module, device, dtype, compute_forces: bool = True, compute_stress: bool = False,
                       skin_A: float = 1.0):
    """torch-sim's ``MaceModel`` around ``module`` with the batched neighbour list of this module in place of its
    per-system loop; energies, forces and stresses are those of the loop (tests/simulate/test_neighbours.py)."""
    import torch_sim as ts
    from torch_sim.models.mace import MaceModel

    class BatchedMaceModel(MaceModel):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.verlet = VerletList(float(self.r_max), skin_A)

        def forward(self, state):
            if isinstance(state, dict):
                state = ts.SimState(**state, masses=torch.ones_like(state["positions"]))
            if not bool(torch.as_tensor(state.pbc).all()) or state.system_idx is None \
                    or state.atomic_numbers is None or self.atomic_numbers_in_init:
                return super().forward(state)
            # the same atoms split into other systems (another batch of the same species) need their own ptr
            if not torch.equal(state.atomic_numbers, getattr(self, "atomic_numbers", torch.zeros(0))) \
                    or not torch.equal(state.system_idx, self.system_idx):
                self.setup_from_system_idx(state.atomic_numbers, state.system_idx)
            cells = state.row_vector_cell
            edge_index, unit_shifts = self.verlet(state.positions, cells, state.system_idx)
            shifts = (unit_shifts[:, :, None] * cells[state.system_idx[edge_index[0]]]).sum(dim=1)
            out = self.model(dict(ptr=self.ptr, node_attrs=self.node_attrs, batch=state.system_idx, pbc=state.pbc,
                                  cell=cells, positions=state.positions, edge_index=edge_index,
                                  unit_shifts=unit_shifts, shifts=shifts),
                             compute_force=self.compute_forces, compute_stress=self.compute_stress)
            results = {"energy": out["energy"].detach()}
            if self.compute_forces:
                results["forces"] = out["forces"].detach()
            if self.compute_stress:
                results["stress"] = out["stress"].detach()
            return results

    return BatchedMaceModel(module, device=device, dtype=dtype, compute_forces=compute_forces,
                            compute_stress=compute_stress)
