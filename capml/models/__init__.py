"""GNN models: the networks, the Lightning regressor, training, prediction and explanation."""

from capml.models.module import GraphRegressor
from capml.models.predict import GapPredictor

__all__ = ["GapPredictor", "GraphRegressor"]
