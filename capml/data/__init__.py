"""PyG dataset of crystal graphs cached on disk, and the Lightning data module with grouped splits."""

from capml.data.datamodule import GraphDataModule
from capml.data.graph_dataset import CrystalGraphDataset, target_values

__all__ = ["CrystalGraphDataset", "GraphDataModule", "target_values"]
