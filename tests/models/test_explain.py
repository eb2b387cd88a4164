"""GNNExplainer edge importance by element pair, with pair counts checked against ASE's neighbour list."""

from collections import Counter

import numpy as np
from ase.neighborlist import neighbor_list

from capml.data.graph_dataset import CrystalGraphDataset
from capml.io.contract import read_dataset
from capml.models.explain import element_pair_importance
from capml.models.module import GraphRegressor


def test_element_pair_importance(trained_run, gap_dataset, tmp_path):
    module = GraphRegressor.load_from_checkpoint(trained_run["checkpoint"])
    graphs = CrystalGraphDataset(gap_dataset, cache_dir=tmp_path)[:2]
    table = element_pair_importance(module, graphs, epochs=20)
    expected = Counter()
    for atoms in read_dataset(gap_dataset, require=())[:2]:
        i, j = neighbor_list("ij", atoms, 5.5)
        symbols = np.array(atoms.get_chemical_symbols())
        expected.update("-".join(sorted(p)) for p in zip(symbols[i], symbols[j]))
    assert dict(zip(table["pair"], table["edges"])) == dict(expected)
    assert table["importance_mean"].between(0, 1).all()
    assert table["importance_mean"].is_monotonic_decreasing
