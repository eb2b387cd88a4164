"""Which bonds matter: GNNExplainer edge masks of a trained model, summarised by element pair."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from ase.data import chemical_symbols
from torch_geometric.explain import Explainer, GNNExplainer

from capml.models.module import GraphRegressor


def element_pair_importance(module: GraphRegressor, graphs, epochs: int = 100, lr: float = 0.01,
                            seed: int = 0) -> pd.DataFrame:
    """Mean GNNExplainer edge importance per unordered element pair over ``graphs`` (one explanation per
    graph), most important first. Columns: pair, importance_mean, importance_std, edges."""
    torch.manual_seed(seed)
    module = module.eval()
    explainer = Explainer(
        model=module,
        algorithm=GNNExplainer(epochs=epochs, lr=lr),
        explanation_type="model",
        edge_mask_type="object",
        node_mask_type=None,
        model_config=dict(mode="regression", task_level="graph", return_type="raw"),
    )
    pairs, masks = [], []
    for graph in graphs:
        batch = torch.zeros(graph.num_nodes, dtype=torch.long)
        explanation = explainer(graph.x, graph.edge_index, edge_weight=graph.edge_weight, batch=batch)
        z = graph.x[:, 0].round().long().numpy()  # raw features: column 0 is Z
        source, target = graph.edge_index.numpy()
        pairs += ["-".join(sorted((chemical_symbols[a], chemical_symbols[b]))) for a, b in zip(z[source], z[target])]
        masks.append(explanation.edge_mask.detach().numpy())
    table = pd.DataFrame({"pair": pairs, "importance": np.concatenate(masks)})
    summary = table.groupby("pair")["importance"].agg(importance_mean="mean", importance_std="std", edges="size")
    return summary.sort_values("importance_mean", ascending=False).reset_index()
