"""Scalers fitted on the training split only and stored (as plain dicts) inside the model checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from capml.errors import InputError


@dataclass
class FeatureScaler:
    """Per-column standardisation of node features: (x - mean) / std."""

    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, features: np.ndarray) -> "FeatureScaler":
        features = np.asarray(features, dtype=float)
        std = features.std(axis=0)
        # a column constant over the training set (e.g. one element only) carries no information: leave it unscaled
        std = np.where(std > 1e-12, std, 1.0)
        return cls(mean=features.mean(axis=0).tolist(), std=std.tolist())

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TargetScaler:
    """``minmax`` maps the training range to [0, 1] (for a sigmoid head); ``standard`` to zero mean, unit std;
    ``scale`` divides by the root mean square only (for the non-negative gap head)."""

    kind: str
    shift: float
    scale: float

    @classmethod
    def fit(cls, targets: np.ndarray, kind: str) -> "TargetScaler":
        targets = np.asarray(targets, dtype=float)
        if targets.size == 0:
            raise InputError("target scaling: the training split holds no labelled frames")
        if kind == "minmax":
            shift, scale = targets.min(), targets.max() - targets.min()
        elif kind == "standard":
            shift, scale = targets.mean(), targets.std()
        elif kind == "scale":  # no shift: a non-negative output stays non-negative in physical units
            shift, scale = 0.0, np.sqrt(np.mean(targets**2))
        else:
            raise InputError(f"target scaling '{kind}': expected 'minmax', 'standard' or 'scale'")
        return cls(kind=kind, shift=float(shift), scale=float(scale) if scale > 1e-12 else 1.0)

    def transform(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.shift) / self.scale

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.scale + self.shift

    def to_dict(self) -> dict:
        return asdict(self)
