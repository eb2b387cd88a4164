"""Interchangeable GNN blocks, chosen by ``_target_`` in conf/model/ (``capml.models.networks.PaperGraphConv``, ...;
a class of the user's own works the same way). Each takes ``in_features`` and maps (x, edge_index, distance,
batch) to one raw output per graph; the output head (sigmoid or linear) and all scaling live in
capml.models.module.

``encoder`` holds the message-passing layers (frozen when fine-tuning with freeze_convs), ``readout`` the
pooling-to-output MLP.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch_geometric.nn import CGConv, GATv2Conv, GraphConv, global_add_pool, global_max_pool, global_mean_pool

from capml.errors import InputError
from capml.graphs.features import GaussianExpansion

POOLS = {"max": global_max_pool, "mean": global_mean_pool, "add": global_add_pool}


def pool_named(name: str):
    if name not in POOLS:
        raise InputError(f"model.pool '{name}': expected one of {sorted(POOLS)}")
    return POOLS[name]


def weighted_adjacency(edge_index: torch.Tensor, weight: torch.Tensor, n_nodes: int) -> torch.Tensor:
    """Sparse CSR matrix A[target, source] = sum of the weights of the edges source -> target (periodic
    images of one neighbour add up, as they would in a sum over messages)."""
    # the index check is one pass over the edges; without it a bad index is a segfault, not an error
    adjacency = torch.sparse_coo_tensor(edge_index.flip(0), weight, (n_nodes, n_nodes), check_invariants=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta state", UserWarning)
        return adjacency.coalesce().to_sparse_csr()


def segment_logsumexp(values: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """log Σ exp(values) over the nodes of each graph (numerically stable, differentiable)."""
    n_graphs = int(batch.max()) + 1 if batch.numel() else 0
    peak = torch.full((n_graphs,), -torch.inf, dtype=values.dtype, device=values.device)
    peak = peak.scatter_reduce(0, batch, values, reduce="amax").detach()
    total = torch.zeros(n_graphs, dtype=values.dtype, device=values.device).index_add(0, batch,
                                                                                       torch.exp(values - peak[batch]))
    return peak + torch.log(total)


class BandEdgeReadout(nn.Module):
    """A readout shaped like a gap: each atom scores a valence-band-edge and a conduction-band-edge energy; the
    VBM is a smooth maximum and the CBM a smooth minimum of those over the atoms of a cell (log-sum-exp at
    ``tau``, in scaled units), and gap = softplus(CBM - VBM), never negative. A local structural change (one
    distorted octahedron) can move one edge, as it does in the real band structure."""

    def __init__(self, hidden: int, readout_hidden: int = 16, dropout: float = 0.1, tau: float = 0.1):
        super().__init__()
        self.scores = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, readout_hidden), nn.ReLU(),
                                    nn.Linear(readout_hidden, 2))
        self.tau = float(tau)

    def forward(self, x: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        valence, conduction = self.scores(x).unbind(-1)
        vbm = self.tau * segment_logsumexp(valence / self.tau, batch)
        cbm = -self.tau * segment_logsumexp(-conduction / self.tau, batch)
        return nn.functional.softplus(cbm - vbm)


class PaperGraphConv(nn.Module):
    """The paper's model: GraphConv layers with the distance as scalar edge weight, each followed by
    BatchNorm and ReLU, then global max pool, dropout, Linear -> 16 -> ReLU -> 1. ``readout="band_edges"``
    replaces pool and MLP with :class:`BandEdgeReadout` (use it with ``head: gap``)."""

    def __init__(self, in_features: int, hidden: int = 64, layers: int = 2, dropout: float = 0.1,
                 pool: str = "max", readout_hidden: int = 16, readout: str = "pool", tau: float = 0.1):
        super().__init__()
        widths = [in_features] + [hidden] * layers
        self.encoder = nn.ModuleList(
            nn.ModuleDict({"conv": GraphConv(a, b), "norm": nn.BatchNorm1d(b)}) for a, b in zip(widths, widths[1:])
        )
        if readout not in ("pool", "band_edges"):
            raise InputError(f"model.network.readout '{readout}': expected pool or band_edges")
        self.pool = pool_named(pool) if readout == "pool" else None
        self.readout = (nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, readout_hidden), nn.ReLU(),
                                      nn.Linear(readout_hidden, 1)) if readout == "pool"
                        else BandEdgeReadout(hidden, readout_hidden, dropout, tau))

    def forward(self, x, edge_index, distance, batch):
        # The distance-weighted neighbour sum as one sparse matmul is ~10x faster on CPU than gather/scatter;
        # GNNExplainer masks individual messages, so an explanation keeps the edge list.
        explaining = any(block["conv"].explain for block in self.encoder)
        graph = (edge_index, distance) if explaining else (weighted_adjacency(edge_index, distance, x.size(0)),)
        for block in self.encoder:
            x = torch.relu(block["norm"](block["conv"](x, *graph)))
        if self.pool is None:
            return self.readout(x, batch)
        return self.readout(self.pool(x, batch)).squeeze(-1)


class CGCNN(nn.Module):
    """Crystal Graph Convolutional Neural Network (Xie & Grossman 2018): gated CGConv layers on
    Gaussian-expanded distances, residual node updates, mean pooling."""

    def __init__(self, in_features: int, hidden: int = 64, layers: int = 3, dropout: float = 0.1,
                 pool: str = "mean", cutoff_A: float = 5.5, n_gaussians: int = 40, readout_hidden: int = 64):
        super().__init__()
        self.expand = GaussianExpansion(cutoff_A, n_gaussians)
        self.embed = nn.Linear(in_features, hidden)
        self.encoder = nn.ModuleList(CGConv(hidden, dim=n_gaussians, batch_norm=True) for _ in range(layers))
        self.pool = pool_named(pool)
        self.readout = nn.Sequential(nn.Linear(hidden, readout_hidden), nn.Softplus(), nn.Dropout(dropout),
                                     nn.Linear(readout_hidden, 1))

    def forward(self, x, edge_index, distance, batch):
        edge_attr = self.expand(distance)
        x = self.embed(x)
        for conv in self.encoder:
            x = nn.functional.softplus(conv(x, edge_index, edge_attr))
        return self.readout(self.pool(x, batch)).squeeze(-1)


class GATv2(nn.Module):
    """Attention over neighbours (GATv2Conv) with Gaussian-expanded distances as edge features."""

    def __init__(self, in_features: int, hidden: int = 64, layers: int = 2, dropout: float = 0.1,
                 pool: str = "mean", cutoff_A: float = 5.5, n_gaussians: int = 20, heads: int = 4,
                 readout_hidden: int = 32):
        super().__init__()
        self.expand = GaussianExpansion(cutoff_A, n_gaussians)
        self.embed = nn.Linear(in_features, hidden)
        self.encoder = nn.ModuleList(
            nn.ModuleDict({"conv": GATv2Conv(hidden, hidden, heads=heads, concat=False, edge_dim=n_gaussians,
                                             add_self_loops=False),
                           "norm": nn.BatchNorm1d(hidden)})
            for _ in range(layers)
        )
        self.pool = pool_named(pool)
        self.readout = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, readout_hidden), nn.ReLU(),
                                     nn.Linear(readout_hidden, 1))

    def forward(self, x, edge_index, distance, batch):
        edge_attr = self.expand(distance)
        x = self.embed(x)
        for block in self.encoder:
            x = x + torch.relu(block["norm"](block["conv"](x, edge_index, edge_attr)))
        return self.readout(self.pool(x, batch)).squeeze(-1)
