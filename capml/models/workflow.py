"""What ``train.py`` runs for the band-gap GNN: one model, a two-stage run, an ensemble or a cross-validation.
Above :mod:`capml.models.train` (one model, two stages, ensembles) and :mod:`capml.models.cv` (built on it)."""

from __future__ import annotations

from omegaconf import DictConfig

from capml.models.cv import run_cv
from capml.models.train import objective, run_ensemble, run_two_stage, train_one


def run(cfg: DictConfig) -> float:
    """Train as configured; returns the validation metric named by ``optimize_metric`` (for sweepers)."""
    if cfg.get("cv"):
        return run_cv(cfg)
    if (cfg.get("ensemble") or {}).get("members", 1) > 1:
        return run_ensemble(cfg)
    if cfg.get("two_stage"):
        return run_two_stage(cfg)
    return objective(train_one(cfg), cfg.optimize_metric)
