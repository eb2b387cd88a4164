"""GNN models: registry of networks, the Lightning regressor, training, prediction and explanation."""

from capml.models.module import GraphRegressor
from capml.models.networks import MODELS, build_network
from capml.models.predict import GapPredictor

__all__ = ["MODELS", "GapPredictor", "GraphRegressor", "build_network"]
