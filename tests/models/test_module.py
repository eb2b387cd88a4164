"""The Lightning module: reported metrics equal metrics recomputed from its predictions; frozen encoders
stay frozen; the checkpoint carries the scalers."""

import numpy as np
import pandas as pd
import torch

from capml.models.module import GraphRegressor


def test_metrics_json_matches_predictions(trained_run):
    table = pd.read_csv(trained_run["out"] / "predictions.csv")
    for split in ("train", "val", "test"):
        rows = table[table["split"] == split]
        error = rows["y_pred"] - rows["y_true"]
        assert np.isclose(trained_run[split]["mae"], error.abs().mean())
        assert np.isclose(trained_run[split]["rmse"], np.sqrt((error**2).mean()))
        r2 = 1 - (error**2).sum() / ((rows["y_true"] - rows["y_true"].mean()) ** 2).sum()
        assert np.isclose(trained_run[split]["r2"], r2)
    assert (trained_run["out"] / "parity.png").stat().st_size > 10_000


def test_checkpoint_carries_training_split_scalers(trained_run):
    module = GraphRegressor.load_from_checkpoint(trained_run["checkpoint"])
    table = pd.read_csv(trained_run["out"] / "predictions.csv")
    train = table[table["split"] == "train"]["y_true"]
    assert np.isclose(module.scaler.shift, train.min(), atol=1e-5)
    assert np.isclose(module.scaler.scale, train.max() - train.min(), atol=1e-5)
    assert module.hparams.cutoff_A == 5.5 and len(module.hparams.feature_scaler["mean"]) == 4


def test_freeze_encoder_trains_only_the_readout(trained_run):
    module = GraphRegressor.load_from_checkpoint(trained_run["checkpoint"])
    module.freeze_encoder()
    optimizer = module.configure_optimizers()["optimizer"]
    trainable = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert trainable == {id(p) for p in module.network.readout.parameters()}
    assert not any(p.requires_grad for p in module.network.encoder.parameters())
    assert all(isinstance(t, torch.Tensor) for t in module.network.encoder.state_dict().values())
