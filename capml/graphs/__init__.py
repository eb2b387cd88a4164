"""Crystal graphs: element features, periodic neighbour lists, normalisation fitted on training data."""

from capml.graphs.build import atoms_to_graph, batch_graphs, graph_arrays
from capml.graphs.features import NODE_FEATURES, GaussianExpansion, node_features
from capml.graphs.neighbour_list import periodic_neighbours
from capml.graphs.normalise import FeatureScaler, TargetScaler

__all__ = [
    "NODE_FEATURES",
    "FeatureScaler",
    "GaussianExpansion",
    "TargetScaler",
    "atoms_to_graph",
    "batch_graphs",
    "graph_arrays",
    "node_features",
    "periodic_neighbours",
]
