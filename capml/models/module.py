"""LightningModule for graph-level regression: scaling, loss, MAE/RMSE/R² per split, optimiser and scheduler.

Node-feature and target scalers (fitted on the training split) are hyperparameters of the module, so a
checkpoint alone reproduces predictions in physical units. The network, optimiser and scheduler are configs by
``_target_`` (conf/model/), kept as plain dicts in the hyperparameters and built here.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pytorch_lightning as pl
import torch

from capml.errors import InputError
from capml.graphs.normalise import TargetScaler
from capml.metrics import regression_metrics

# head -> the target scaling it needs; "gap": a non-negative network output (band-edge readout) times a scale
HEADS = {"sigmoid": "minmax", "linear": "standard", "gap": "scale"}
LOSSES = {"mse": torch.nn.functional.mse_loss, "l1": torch.nn.functional.l1_loss}


def target_scaling_for(head: str) -> str:
    if head not in HEADS:
        raise InputError(f"model.head '{head}': expected one of {sorted(HEADS)}")
    return HEADS[head]


def instantiate_config(config: Mapping, kind: type, key: str, *args, **kwargs):
    """``config["_target_"]`` called with ``args``, ``kwargs`` and the config's other keys; keys such as
    ``_partial_`` (lightning-hydra-template's mark of an optimiser that gets its parameters later) are Hydra's and
    dropped. The target must be a ``kind`` (a network, an optimiser, a scheduler): a checkpoint names the code its
    hyperparameters run, and that code is one of these and nothing else."""
    import importlib

    if "_target_" not in config:
        raise InputError(f"{key}: no _target_ (expected the import path of a {kind.__module__}.{kind.__name__})")
    module, _, name = str(config["_target_"]).rpartition(".")
    try:
        target = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise InputError(f"{key}._target_ '{config['_target_']}': cannot import it ({err})") from err
    if not (isinstance(target, type) and issubclass(target, kind)):
        raise InputError(f"{key}._target_ '{config['_target_']}': not a {kind.__module__}.{kind.__name__}")
    try:
        return target(*args, **kwargs, **{k: v for k, v in config.items() if not k.startswith("_")})
    except TypeError as err:
        raise InputError(f"{key}: {err}") from err


# checkpoints written while networks were a registry of names (the bundled ensembles): the class of each name
NETWORKS_BY_NAME = {"paper": "capml.models.networks.PaperGraphConv", "cgcnn": "capml.models.networks.CGCNN",
                    "gatv2": "capml.models.networks.GATv2"}


def upgrade_hparams(hparams: Mapping) -> dict:
    """A checkpoint's hyperparameters in today's form. Checkpoints from before the network, optimiser and scheduler
    were configs by ``_target_`` (the bundled ensembles) hold ``network.name``, ``lr``, ``weight_decay``,
    ``scheduler`` (plateau | cosine | none), ``scheduler_patience`` and ``max_epochs``; these become the configs
    that train as those did (Adam; ReduceLROnPlateau halving the rate; cosine annealing over max_epochs).
    Today's hyperparameters come back unchanged."""
    hp = dict(hparams)
    network = dict(hp["network"])
    if "name" in network:
        name = network.pop("name")
        if name not in NETWORKS_BY_NAME:
            raise InputError(f"network '{name}' of an old checkpoint: expected one of {sorted(NETWORKS_BY_NAME)}")
        hp["network"] = {"_target_": NETWORKS_BY_NAME[name], **network}
    if "lr" in hp:
        hp["optimizer"] = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": hp.pop("lr"),
                           "weight_decay": hp.pop("weight_decay", 0.0)}
    if isinstance(hp.get("scheduler"), str):
        kind, patience, epochs = hp.pop("scheduler"), hp.pop("scheduler_patience", 10), hp.pop("max_epochs", 100)
        schedulers = {"none": None,
                      "plateau": {"_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau", "_partial_": True,
                                  "factor": 0.5, "patience": patience},
                      "cosine": {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "_partial_": True,
                                 "T_max": epochs}}
        if kind not in schedulers:
            raise InputError(f"scheduler '{kind}' of an old checkpoint: expected one of {sorted(schedulers)}")
        hp["scheduler"] = schedulers[kind]
    return hp


class GraphRegressor(pl.LightningModule):
    """``network``: a config by ``_target_`` (an ``nn.Module`` that takes ``in_features``); ``optimizer``: one
    (a ``torch.optim.Optimizer``, given the trainable parameters); ``scheduler``: one (an ``LRScheduler``, given
    the optimiser; stepped per epoch, on ``val/loss`` where it needs a metric) or None for a constant learning
    rate; ``head``: sigmoid (min-max scaled targets, the paper) or linear (standardised targets);
    ``feature_scaler``/``target_scaler``: dicts from capml.graphs;
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
        optimizer: dict,
        scheduler: dict | None = None,
        loss: str = "mse",
        descriptors: str | None = None,
        descriptors_digest: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        if target_scaler["kind"] != target_scaling_for(head):
            raise InputError(f"head '{head}' needs '{HEADS[head]}' target scaling, got '{target_scaler['kind']}'")
        if loss not in LOSSES:
            raise InputError(f"loss '{loss}': expected one of {sorted(LOSSES)}")
        self.network = instantiate_config(network, torch.nn.Module, "model.network",
                                          in_features=len(feature_scaler["mean"]))
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

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, **kwargs):
        """Lightning's loader, for checkpoints of any age: hyperparameters of the old form come through
        :func:`upgrade_hparams` (the old keys they replace are not arguments any more, and Lightning drops them)."""
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=kwargs.get("weights_only"))
        saved = saved.get(cls.CHECKPOINT_HYPER_PARAMS_KEY, {})
        changed = {k: v for k, v in upgrade_hparams(saved).items() if saved.get(k) != v}
        return super().load_from_checkpoint(checkpoint_path, map_location=map_location, **{**changed, **kwargs})

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = instantiate_config(self.hparams.optimizer, torch.optim.Optimizer, "model.optimizer", params)
        if not self.hparams.scheduler:
            return optimizer
        scheduler = instantiate_config(self.hparams.scheduler, torch.optim.lr_scheduler.LRScheduler,
                                       "model.scheduler", optimizer)
        # the monitored metric is read by schedulers that need one (ReduceLROnPlateau) and ignored by the others
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}


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
