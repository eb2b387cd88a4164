"""GNN training stage of train.py: one run, or pretrain -> fine-tune -> from-scratch comparison.

Everything is instantiated from the composed Hydra config (conf/train.yaml): the data module, Trainer,
callbacks and loggers. Each run writes into its output folder: the resolved config, checkpoints/best.ckpt,
metrics.json (val and test MAE/RMSE/R² of the best checkpoint), predictions.csv, parity.png and, when
``explain.graphs`` > 0, edge importance by element pair (GNNExplainer).
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.loggers import WandbLogger

from capml.io.records import resolved_record, save_resolved_config
from capml.errors import InputError
from capml.metrics import regression_metrics
from capml.models.module import GraphRegressor, target_scaling_for
from capml.models.predict import load_module
from capml.models.report import compare_two_stage, parity_plot, prediction_table
from capml.io.jsonio import write_json
from capml.io.paths import portable_path

log = logging.getLogger(__name__)


def objective(metrics: dict, name: str) -> float:
    split, metric = name.split("/")
    return float(metrics[split][metric])


def build_module(cfg: DictConfig, datamodule) -> GraphRegressor:
    model = cfg.model
    digest = None
    if datamodule.descriptors:
        from capml.graphs.descriptors import descriptors_for

        digest = descriptors_for(datamodule.descriptors).digest
    common = dict(target=datamodule.target, cutoff_A=datamodule.cutoff_A, descriptors=datamodule.descriptors,
                  descriptors_digest=digest, loss=model.loss,
                  optimizer=OmegaConf.to_container(model.optimizer, resolve=True),
                  scheduler=OmegaConf.to_container(model.scheduler, resolve=True) if model.get("scheduler") else None)
    checkpoint = cfg.finetune.checkpoint
    if not checkpoint:
        head = model.head
        return GraphRegressor(network=OmegaConf.to_container(model.network, resolve=True), head=head,
                              feature_scaler=datamodule.feature_scaler().to_dict(),
                              target_scaler=datamodule.target_scaler(target_scaling_for(head)).to_dict(), **common)
    if not Path(checkpoint).is_file():
        raise InputError(f"finetune.checkpoint={checkpoint}: file not found")
    base = load_module(Path(checkpoint))
    if base.hparams.get("descriptors") != datamodule.descriptors:
        raise InputError(f"finetune.checkpoint={checkpoint}: node descriptors {base.hparams.get('descriptors')}, "
                         f"data.descriptors is {datamodule.descriptors}")
    if abs(base.hparams.cutoff_A - datamodule.cutoff_A) > 1e-9:
        raise InputError(f"finetune.checkpoint={checkpoint}: trained with cutoff {base.hparams.cutoff_A} Å, "
                         f"data.cutoff_A is {datamodule.cutoff_A} Å")
    head = base.hparams.head
    target_scaler = (datamodule.target_scaler(target_scaling_for(head)).to_dict() if cfg.finetune.refit_scaling
                     else dict(base.hparams.target_scaler))
    # the encoder was trained on inputs standardised with the pretraining statistics: keep them
    module = GraphRegressor(network=dict(base.hparams.network), head=head, feature_scaler=dict(base.hparams.feature_scaler),
                            target_scaler=target_scaler, **common)
    module.network.load_state_dict(base.network.state_dict())
    if cfg.finetune.freeze_convs:
        module.freeze_encoder()
    log.info("fine-tuning from %s (freeze_convs=%s, refit_scaling=%s)", checkpoint, cfg.finetune.freeze_convs,
             cfg.finetune.refit_scaling)
    return module


def instantiate_group(group: DictConfig | None) -> list:
    return [instantiate(item) for item in (group or {}).values() if item is not None and "_target_" in item]


def resume_checkpoint(cfg: DictConfig, out: Path) -> str | None:
    """``checkpoints/last.ckpt`` of a run killed in ``out`` (a rerun with hydra.run.dir=<that folder>), which the
    trainer resumes; refused when that run had another config (trainer.max_epochs may grow)."""
    last = out / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return None
    saved = out / "train.config.yaml"
    comparable = lambda c: {k: v for k, v in c.items() if k != "trainer"} | {  # noqa: E731
        "trainer": {k: v for k, v in c.get("trainer", {}).items() if k != "max_epochs"}}
    current = comparable(resolved_record(cfg))
    previous = comparable(resolved_record(OmegaConf.load(saved))) if saved.is_file() else None
    if previous != current:
        differ = sorted(k for k in set(current) | set(previous or {}) if (previous or {}).get(k) != current.get(k))
        raise InputError(f"{last}: {out} holds a run with another config (differs in {differ}); resume it with the "
                         "same config, or train into another folder (hydra.run.dir)")
    log.info("resuming from %s", last)
    return str(last)


def train_one(cfg: DictConfig) -> dict:
    out = Path(cfg.paths.output_dir)
    resume = resume_checkpoint(cfg, out)
    out.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    save_resolved_config(cfg, out, "train")  # the inputs are accepted: the record of this run (resume compares it)
    loggers = instantiate_group(cfg.get("logger"))
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    trainer = instantiate(cfg.trainer, callbacks=instantiate_group(cfg.get("callbacks")), logger=loggers or False,
                          default_root_dir=str(out))
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    checkpoint = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    if checkpoint:
        module = GraphRegressor.load_from_checkpoint(checkpoint, map_location="cpu")
    else:
        checkpoint = str(out / "checkpoints" / "last.ckpt")
        trainer.save_checkpoint(checkpoint)
    metrics = {"target": datamodule.target, "checkpoint": str(Path(checkpoint).resolve()),
               "frames": {split: int(len(idx)) for split, idx in datamodule.indices.items()},
               "dropped_without_target": int(datamodule.dropped), "extra_train": datamodule.n_extra}
    table = prediction_table(module, datamodule)
    for split, rows in table.groupby("split"):
        metrics[split] = regression_metrics(rows["y_true"].to_numpy(), rows["y_pred"].to_numpy())
    if trainer.is_global_zero:  # under DDP every rank gets the metrics, one writes the files
        write_outputs(cfg, out, module, datamodule, table, metrics)
        if cfg.get("export_checkpoint"):
            export = Path(cfg.export_checkpoint)
            export.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(checkpoint, export)
            log.info("exported %s", export)
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()  # the next stage of a two-stage run starts its own W&B run
    log.info("%s: val MAE %.4f, test MAE %s; outputs in %s", datamodule.target, metrics["val"]["mae"],
             f"{metrics['test']['mae']:.4f}" if "test" in metrics else "n/a", out)
    return metrics


def write_outputs(cfg: DictConfig, out: Path, module: GraphRegressor, datamodule, table, metrics: dict) -> None:
    table.to_csv(out / "predictions.csv", index=False)
    write_json((out / "metrics.json"), metrics, indent=2)
    parity_plot(table, out / "parity.png", title=f"{cfg.run_name}: {datamodule.target}")
    if cfg.explain.graphs > 0 and len(datamodule.indices["test"]):
        from capml.models.explain import element_pair_importance

        graphs = datamodule.subset("test")[: cfg.explain.graphs]
        importance = element_pair_importance(module, graphs, epochs=cfg.explain.epochs)
        importance.to_csv(out / "edge_importance.csv", index=False)


def stage_config(cfg: DictConfig, name: str, target: str, checkpoint: str | None, lr: float | None) -> DictConfig:
    stage = copy.deepcopy(cfg)
    with open_dict(stage):
        stage.two_stage = None
        stage.paths.output_dir = str(Path(cfg.paths.output_dir) / name)
        stage.run_name = f"{cfg.run_name}_{name}"
        stage.data.target = target
        stage.finetune.checkpoint = checkpoint
        # only the fine-tuned model is the product of a two-stage run
        if name != "finetune":
            stage.export_checkpoint = None
        if name == "pretrain" and cfg.two_stage.get("cheap_path"):
            # the cheap fidelity lives in its own file of other structures (e.g. the GFN2-xTB tier)
            stage.data.path = cfg.two_stage.cheap_path
        elif name == "pretrain" and str(cfg.two_stage.get("disjoint")).lower() == "held_out":
            stage.data.exclude_held_out_of = cfg.two_stage.accurate
        elif name == "pretrain" and cfg.two_stage.get("disjoint"):
            stage.data.exclude_labelled = cfg.two_stage.accurate
        if checkpoint and lr is not None:
            stage.model.optimizer.lr = lr
    return stage


def run_two_stage(cfg: DictConfig) -> float:
    """Pretrain on ``two_stage.cheap`` (from ``two_stage.cheap_path`` when set), fine-tune on ``two_stage.accurate`` from the stage-1 checkpoint and
    train on ``two_stage.accurate`` from scratch; two_stage.csv/.json/.png compare the last two."""
    plan = cfg.two_stage
    pretrain = train_one(stage_config(cfg, "pretrain", plan.cheap, None, None))
    finetune = train_one(stage_config(cfg, "finetune", plan.accurate, pretrain["checkpoint"], plan.finetune_lr))
    scratch = train_one(stage_config(cfg, "scratch", plan.accurate, None, None))
    compare_two_stage({"pretrain": pretrain, "finetune": finetune, "scratch": scratch}, Path(cfg.paths.output_dir))
    return objective(finetune, cfg.optimize_metric)


def member_config(cfg: DictConfig, k: int, out: Path, export: Path | None) -> DictConfig:
    """Ensemble member k: its own seed (split and initial weights), output folder and exported checkpoint."""
    member = copy.deepcopy(cfg)
    with open_dict(member):
        member.ensemble = None
        member.seed = int(cfg.seed) + k
        member.data.split_seed = member.seed
        member.paths.output_dir = str(out / f"member{k}")
        member.run_name = f"{cfg.run_name}_member{k}"
        member.export_checkpoint = str(export / f"member{k}.ckpt") if export else None
    return member


def run_ensemble(cfg: DictConfig) -> float:
    """``ensemble.members`` models, each with its own seed (split and initial weights), every one exported to
    ``ensemble.export_dir/member<k>.ckpt``, a folder that GapPredictor (and simulate.gnn_checkpoint) loads as one
    ensemble; ``ensemble.json`` beside them records the members' metrics."""
    plan = cfg.ensemble
    out = Path(cfg.paths.output_dir)
    export = Path(plan.export_dir) if plan.get("export_dir") else None
    if export is not None:
        export.mkdir(parents=True, exist_ok=True)
        for old in export.glob("member*.ckpt"):
            old.unlink()
    results = []
    for k in range(int(plan.members)):
        member = member_config(cfg, k, out, export)
        metrics = run_two_stage_metrics(member) if member.get("two_stage") else train_one(member)
        results.append({"member": k, "seed": int(member.seed), **{
            f"{split}_{name}": metrics[split][name] for split in ("val", "test") if split in metrics
            for name in ("n", "mae", "rmse", "r2")}})
    card = {"target": cfg.two_stage.accurate if cfg.get("two_stage") else cfg.data.target,
            "members": len(results), "data": portable_path(cfg.data.path),
            "extra_train": [portable_path(p) for p in cfg.data.get("extra_train") or []],
            "model": OmegaConf.to_container(cfg.model, resolve=True), "per_member": results}
    if plan.get("calibration"):  # calibration.json of a cross-validation with ensembles (capml.models.cv)
        card["calibration"] = json.loads(Path(plan.calibration).read_text())
        card["flag_std_eV"] = card["calibration"]["flag_std_eV"]
    if plan.get("flag_std_eV") is not None:
        card["flag_std_eV"] = float(plan.flag_std_eV)
    if plan.get("correction_to"):  # this ensemble learns target - base target; GapPredictor adds the base ensemble
        card["correction_to"] = str(plan.correction_to)
    for folder in [out] + ([export] if export is not None else []):
        previous = folder / "ensemble.json"
        if folder == export and previous.is_file():  # keep what a calibration wrote (flag threshold, base model)
            old = json.loads(previous.read_text())
            card = {**{k: v for k, v in old.items() if k in ("flag_std_eV", "correction_to", "calibration")}, **card}
        write_json((folder / "ensemble.json"), card, indent=1)
    log.info("ensemble of %d: test MAE per member %s", len(results),
             [round(r.get("test_mae", float("nan")), 4) for r in results])
    return float(np.mean([r["val_mae"] for r in results]))


def run_two_stage_metrics(cfg: DictConfig) -> dict:
    """A two-stage member: pretrain, then fine-tune (exported); the fine-tuned model's metrics."""
    plan = cfg.two_stage
    pretrain = train_one(stage_config(cfg, "pretrain", plan.cheap, None, None))
    return train_one(stage_config(cfg, "finetune", plan.accurate, pretrain["checkpoint"], plan.finetune_lr))
