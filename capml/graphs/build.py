"""Structures to PyG graphs: node features, periodic radius edges (target <- source) and distances."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
from ase import Atoms
from torch_geometric.data import Batch, Data

from capml.graphs.features import node_features
from capml.graphs.neighbour_list import periodic_neighbours

DEFAULT_CUTOFF_A = 5.5


def graph_arrays(atoms: Atoms, cutoff_A: float = DEFAULT_CUTOFF_A, where: str = "<atoms>"):
    """(features (n, 4), edge_index (2, E), distances_A (E,)) with messages flowing j -> i."""
    i, j, _, distances = periodic_neighbours(atoms, cutoff_A, where)
    return node_features(atoms.numbers, where), np.stack([j, i]), distances


def atoms_to_graph(atoms: Atoms, cutoff_A: float = DEFAULT_CUTOFF_A, where: str = "<atoms>") -> Data:
    features, edge_index, distances = graph_arrays(atoms, cutoff_A, where)
    return Data(
        x=torch.as_tensor(features, dtype=torch.float32),
        edge_index=torch.as_tensor(edge_index),
        edge_weight=torch.as_tensor(distances, dtype=torch.float32),
        num_nodes=len(atoms),
    )


@lru_cache(maxsize=4)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="capml-graphs")


def with_descriptors(features: Sequence[np.ndarray], structures: Sequence[Atoms], descriptors: str | None,
                     descriptor_dtype: str = "float64"):
    """Elemental node features, followed by the MACE model ``descriptors``' invariant descriptors when named
    (computed in ``descriptor_dtype``)."""
    if not descriptors:
        return list(features)
    from capml.graphs.descriptors import descriptors_for

    values = descriptors_for(descriptors, dtype=descriptor_dtype)(structures)
    return [np.concatenate([f, d], axis=1) for f, d in zip(features, values)]


def batch_graphs(structures: Sequence[Atoms], cutoff_A: float = DEFAULT_CUTOFF_A, where: str = "<atoms>",
                 workers: int = 1, descriptors: str | None = None, descriptor_dtype: str = "float64") -> Batch:
    """One disjoint-union graph of ``structures``, concatenated in numpy (much faster than Batch.from_data_list).

    ``workers`` > 1 builds the per-structure neighbour lists in threads (vesin releases the GIL); ``descriptors``
    (a MACE model, see capml.graphs.descriptors) appends its per-atom descriptors, one model call per batch, in
    ``descriptor_dtype``."""
    def build(k: int):
        return graph_arrays(structures[k], cutoff_A, f"{where}: structure {k}")

    indices = range(len(structures))
    parts = list(_pool(workers).map(build, indices)) if workers > 1 and len(structures) > 1 else list(map(build, indices))
    if descriptors:
        features = with_descriptors([p[0] for p in parts], structures, descriptors, descriptor_dtype)
        parts = [(f, e, d) for f, (_, e, d) in zip(features, parts)]
    n_atoms = np.array([len(p[0]) for p in parts])
    offsets = np.concatenate([[0], np.cumsum(n_atoms)[:-1]])
    edge_index = np.concatenate([p[1] + off for p, off in zip(parts, offsets)], axis=1)
    batch = Batch(
        x=torch.as_tensor(np.concatenate([p[0] for p in parts]), dtype=torch.float32),
        edge_index=torch.as_tensor(edge_index),
        edge_weight=torch.as_tensor(np.concatenate([p[2] for p in parts]), dtype=torch.float32),
        batch=torch.as_tensor(np.repeat(np.arange(len(parts)), n_atoms)),
    )
    batch._num_graphs = len(parts)  # what Batch.from_data_list sets; num_graphs reads it
    return batch
