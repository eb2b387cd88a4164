"""LightningModule for graph-level regression: scaling, loss, MAE/RMSE/R² per split, optimiser and scheduler.

Node-feature and target scalers (fitted on the training split) are hyperparameters of the module, so a
checkpoint alone reproduces predictions in physical units.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch

from capml.errors import InputError
from capml.graphs.normalise import TargetScaler
from capml.models.networks import build_network

# head -> the target scaling it needs; "gap": a non-negative network output (band-edge readout) times a scale
HEADS = {"sigmoid": "minmax", "linear": "standard", "gap": "scale"}
LOSSES = {"mse": torch.nn.functional.mse_loss, "l1": torch.nn.functional.l1_loss}


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """n, MAE, RMSE and R² (NaN for fewer than two distinct references) in the target's units."""
    error = y_pred - y_true
    total = np.sum((y_true - y_true.mean()) ** 2)
    return {"n": int(len(y_true)), "mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error**2))),
            "r2": float(1 - np.sum(error**2) / total) if total > 0 else float("nan")}


def target_scaling_for(head: str) -> str:
    if head not in HEADS:
        raise InputError(f"model.head '{head}': expected one of {sorted(HEADS)}")
    return HEADS[head]


class GraphRegressor(pl.LightningModule):
    """``network``: registry name plus keyword arguments; ``head``: sigmoid (min-max scaled targets, the
    paper) or linear (standardised targets); ``feature_scaler``/``target_scaler``: dicts from capml.graphs;
    ``descriptors``: the MACE model whose descriptors follow the elemental node features (None: elemental only),
    recorded so that a checkpoint builds its own inputs, with the model file's digest (``descriptors_digest``) so
    that a refitted MLIP in the same file is not taken for the one the network learnt from."""

    def __init__(
        self,
        network: dict,
        head: str,
        feature_scaler: dict,
        target_scaler: dict,
        target: str,
        cutoff_A: float,
        loss: str = "mse",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        scheduler: str = "plateau",
        scheduler_patience: int = 10,
        max_epochs: int = 100,
        descriptors: str | None = None,
        descriptors_digest: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        if target_scaler["kind"] != target_scaling_for(head):
            raise InputError(f"head '{head}' needs '{HEADS[head]}' target scaling, got '{target_scaler['kind']}'")
        if loss not in LOSSES:
            raise InputError(f"loss '{loss}': expected one of {sorted(LOSSES)}")
        self.network = build_network(in_features=len(feature_scaler["mean"]), **network)
        self.register_buffer("feature_mean", torch.tensor(feature_scaler["mean"], dtype=torch.float32))
        self.register_buffer("feature_std", torch.tensor(feature_scaler["std"], dtype=torch.float32))
        self.scaler = TargetScaler(**target_scaler)
        self.loss_fn = LOSSES[loss]
        self.outputs: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {"train": [], "val": [], "test": []}

    def forward(self, x, edge_index, edge_weight, batch):
        """Prediction in scaled target units."""
        out = self.network((x - self.feature_mean) / self.feature_std, edge_index, edge_weight, batch)
        return torch.sigmoid(out) if self.hparams.head == "sigmoid" else out

    def predict_physical(self, graph) -> torch.Tensor:
        """Prediction in the target's physical units (eV for gaps)."""
        return self.scaler.inverse(self(graph.x, graph.edge_index, graph.edge_weight, graph.batch))

    def _step(self, graph, split: str):
        y = graph[self.hparams.target]
        scaled = self(graph.x, graph.edge_index, graph.edge_weight, graph.batch)
        loss = self.loss_fn(scaled, self.scaler.transform(y))
        self.outputs[split].append((y.detach(), self.scaler.inverse(scaled).detach()))
        self.log(f"{split}/loss", loss, batch_size=graph.num_graphs, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _log_metrics(self, split: str):
        if not self.outputs[split]:
            return
        y_true, y_pred = (torch.cat(column).double().cpu().numpy() for column in zip(*self.outputs[split]))
        self.outputs[split].clear()
        metrics = regression_metrics(y_true, y_pred)
        del metrics["n"]
        self.log_dict({f"{split}/{name}": value for name, value in metrics.items()}, prog_bar=split == "val",
                      sync_dist=True)

    def training_step(self, graph, batch_idx):
        return self._step(graph, "train")

    def validation_step(self, graph, batch_idx):
        self._step(graph, "val")

    def test_step(self, graph, batch_idx):
        self._step(graph, "test")

    def on_train_epoch_end(self):
        self._log_metrics("train")

    def on_validation_epoch_end(self):
        self._log_metrics("val")

    def on_test_epoch_end(self):
        self._log_metrics("test")

    def freeze_encoder(self) -> None:
        """Fine-tuning with frozen convolutions: only the readout MLP trains (BatchNorm statistics stay fixed)."""
        self.network.encoder.requires_grad_(False)
        self.network.encoder.eval()

    def on_train_epoch_start(self):
        # Lightning puts every module in train mode each epoch; a frozen encoder keeps its running statistics
        if not any(p.requires_grad for p in self.network.encoder.parameters()):
            self.network.encoder.eval()

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        kind = self.hparams.scheduler
        if kind == "none":
            return optimizer
        if kind == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5,
                                                                   patience=self.hparams.scheduler_patience)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}
        if kind == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.hparams.max_epochs)
            return {"optimizer": optimizer, "lr_scheduler": scheduler}
        raise InputError(f"model.scheduler '{kind}': expected none, plateau or cosine")


class RandomState(pl.Callback):
    """Saves the random number generators (Python, NumPy, torch) in every checkpoint and restores them on resume,
    so a resumed training draws the same shuffles and dropout masks as one that was never stopped."""

    def state_dict(self) -> dict:  # plain numbers and tensors only: checkpoints load with weights_only
        import random

        version, keys, gauss = random.getstate()
        _, mt, pos, has_gauss, cached = np.random.get_state()
        state = {"python": [version, list(keys), gauss], "numpy": [mt.tolist(), int(pos), int(has_gauss),
                                                                   float(cached)], "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        import random

        version, keys, gauss = state["python"]
        random.setstate((version, tuple(keys), gauss))
        mt, pos, has_gauss, cached = state["numpy"]
        np.random.set_state(("MT19937", np.asarray(mt, dtype=np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
