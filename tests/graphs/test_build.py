"""Graphs of structures and the fast numpy batch against PyG's own batching."""

import numpy as np
import torch
from torch_geometric.data import Batch

from capml.graphs.build import atoms_to_graph, batch_graphs
from capml.graphs.normalise import FeatureScaler, TargetScaler
from capml.structures.system import load_system
from capml.structures.thermal import uniform_rattle


def structures():
    system = load_system("ag3sbri", supercell=(2, 2, 1))
    return [uniform_rattle(system.build(d), 0.1, seed) for seed, d in enumerate(system.decorations(2) * 2)]


def test_graph_edges_flow_from_neighbour_to_centre():
    atoms = structures()[0]
    graph = atoms_to_graph(atoms)
    source, target = graph.edge_index
    vectors = atoms.positions[source] - atoms.positions[target]
    # minimum-image distances bound the stored (image) distances from below
    assert torch.all(graph.edge_weight + 1e-5 >= torch.as_tensor(np.linalg.norm(
        atoms.cell.cartesian_positions(((atoms.cell.scaled_positions(vectors) + 0.5) % 1.0) - 0.5), axis=1)))
    assert graph.edge_weight.max() < 5.5 and graph.x.shape == (20, 4)


def test_numpy_batch_equals_pyg_batch():
    frames = structures()
    ours = batch_graphs(frames)
    reference = Batch.from_data_list([atoms_to_graph(a) for a in frames])
    assert ours.num_graphs == reference.num_graphs == len(frames)
    threaded = batch_graphs(frames, workers=2)
    for key in ("x", "edge_index", "edge_weight", "batch"):
        assert torch.equal(ours[key], reference[key]), key
        assert torch.equal(threaded[key], reference[key]), key


def test_scalers():
    rng = np.random.default_rng(0)
    features = rng.normal(3.0, 2.0, size=(100, 4))
    features[:, 2] = 1.5  # constant column stays finite
    scaler = FeatureScaler.fit(features)
    scaled = (features - scaler.mean) / np.asarray(scaler.std)
    assert np.allclose(scaled[:, [0, 1, 3]].mean(0), 0) and np.allclose(scaled[:, [0, 1, 3]].std(0), 1)
    assert np.all(np.isfinite(scaled))
    y = torch.tensor([1.0, 2.5, 4.0])
    minmax = TargetScaler.fit(y.numpy(), "minmax")
    assert torch.allclose(minmax.transform(y), torch.tensor([0.0, 0.5, 1.0]))
    standard = TargetScaler.fit(y.numpy(), "standard")
    assert torch.allclose(standard.inverse(standard.transform(y)), y)
