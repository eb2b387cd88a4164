"""Grouped k-fold cross-validation of a gap model over all labelled frames, over several fold draws (seeds).

    python train.py experiment=cv                                    # paper model, gap_pbesol
    python train.py experiment=cv data.target=gap_hse06              # HSE06 from scratch
    python train.py experiment=[cv,two_stage]                        # pretrain PBEsol -> fine-tune HSE06 per fold
    python train.py experiment=cv cv.correction_of=gap_pbesol data.target=gap_hse06   # PBEsol model + HSE06-PBEsol
    python train.py experiment=cv cv.members=5                       # an ensemble per fold: calibration

The files in ``cv.datasets`` are merged (settings checked per fidelity) into ``<run>/cv_data.extxyz``; folds are
drawn over the groups of ``data.group_key`` (parent configuration, MD run) of the whole file with seed
``cv.seeds[i]``, so every target and every stage of a model (pretraining, the base of a correction) holds out the
same structures. Each held-out frame is predicted by the model(s) trained on the other folds (validation for early
stopping drawn from those folds). Reported per seed and as mean and spread over seeds, per kind of structure
(sampled, relaxed, MD) and per temperature: MAE, RMSE, R², mean error, and with ``cv.members`` > 1 the fraction of
errors inside one and two ensemble standard deviations. Outputs: ``cv_predictions.csv``, ``cv_metrics.json``,
``cv_breakdown.csv``, ``cv.png``.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf, open_dict

from capml.errors import InputError
from capml.io.contract import merge_datasets
from capml.io.extxyz import read_structures
from capml.io.jsonio import write_json
from capml.metrics import ParityPanel, draw_parity, regression_metrics

log = logging.getLogger(__name__)

KINDS = {"phonon": "sampled", "uniform": "sampled", "equilibrium": "sampled", "relaxed": "relaxed", "md": "md"}


def delta_target(target: str, base: str) -> str:
    """The derived target ``target - base`` (e.g. gap_hse06_minus_gap_pbesol)."""
    return f"{target}_minus_{base}"


def _member_cfg(cfg: DictConfig, out: Path, data: Path, seed: int, fold: int, member: int, target: str) -> DictConfig:
    c = copy.deepcopy(cfg)
    with open_dict(c):
        c.cv = None
        c.ensemble = None
        c.export_checkpoint = None
        c.explain.graphs = 0
        c.seed = 1000 * int(seed) + int(member)
        c.data.path = str(data)
        c.data.cv_folds = int(cfg.cv.folds)
        c.data.cv_fold = int(fold)
        c.data.cv_seed = int(seed)
        c.data.split_seed = c.seed
        c.data.target = target
        c.data.extra_train = []
        c.paths.output_dir = str(out)
        c.run_name = f"{cfg.run_name}_s{seed}_f{fold}_m{member}"
    return c


def _test_predictions(run_dir: Path) -> pd.Series:
    table = pd.read_csv(run_dir / "predictions.csv")
    test = table[table["split"] == "test"]
    return pd.Series(test["y_pred"].to_numpy(), index=test["structure_id"].astype(str))


def _train_member(cfg: DictConfig, out: Path, data: Path, seed: int, fold: int, member: int) -> pd.Series:
    """Held-out predictions (by structure_id) of one model trained on the other folds."""
    from capml.models.train import stage_config, train_one

    plan = cfg.cv
    if plan.get("correction_of"):  # accurate = model of the cheap fidelity + model of (accurate - cheap)
        base = train_one(_member_cfg(cfg, out / "base", data, seed, fold, member, plan.correction_of))
        delta = train_one(_member_cfg(cfg, out / "delta", data, seed, fold, member,
                                      delta_target(cfg.data.target, plan.correction_of)))
        base_pred = _test_predictions(Path(base["checkpoint"]).parents[1])
        delta_pred = _test_predictions(Path(delta["checkpoint"]).parents[1])
        return (base_pred + delta_pred).dropna()
    if cfg.get("two_stage"):
        two = cfg.two_stage
        member_cfg = _member_cfg(cfg, out, data, seed, fold, member, two.accurate)
        pretrain = train_one(stage_config(member_cfg, "pretrain", two.cheap, None, None))
        train_one(stage_config(member_cfg, "finetune", two.accurate, pretrain["checkpoint"], two.finetune_lr))
        return _test_predictions(out / "finetune")
    train_one(_member_cfg(cfg, out, data, seed, fold, member, cfg.data.target))
    return _test_predictions(out)


def run_cv(cfg: DictConfig) -> float:
    plan = cfg.cv
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = cfg.two_stage.accurate if cfg.get("two_stage") else cfg.data.target
    datasets = list(plan.get("datasets") or [cfg.data.path])
    data = out / "cv_data.extxyz"
    merge_datasets(datasets, data)
    frames = read_structures(data)
    meta = pd.DataFrame([{"structure_id": str(a.info["structure_id"]), "y_true": float(a.info.get(target, np.nan))
                          if target.startswith("gap_") else np.nan, "x": a.info.get("x", np.nan),
                          "temperature_K": a.info.get("temperature", np.nan),
                          "kind": KINDS.get(str(a.info.get("sampling", "")), "other"),
                          "group": str(a.info.get(cfg.data.group_key, ""))} for a in frames])
    if meta["y_true"].notna().sum() == 0:
        raise InputError(f"cv: no frame of {datasets} has '{target}'")
    rows = []
    for seed in plan.seeds:
        for fold in range(int(plan.folds)):
            members = [_train_member(cfg, out / f"s{seed}_f{fold}_m{m}", data, seed, fold, m).rename(m)
                       for m in range(int(plan.members))]
            table = pd.concat(members, axis=1)
            rows.append(pd.DataFrame({"structure_id": table.index, "seed": seed, "fold": fold,
                                      "y_pred": table.mean(axis=1).to_numpy(),
                                      "y_std": table.std(axis=1, ddof=1).to_numpy() if len(members) > 1 else np.nan}))
            log.info("cv seed %s fold %d: %d held-out frames", seed, fold, len(table))
    predictions = pd.concat(rows, ignore_index=True).merge(meta, on="structure_id", how="left")
    predictions = predictions[predictions["y_true"].notna()]
    predictions["error"] = predictions["y_pred"] - predictions["y_true"]
    predictions.to_csv(out / "cv_predictions.csv", index=False)
    breakdown = cv_breakdown(predictions)
    breakdown.to_csv(out / "cv_breakdown.csv", index=False)
    overall = breakdown[breakdown["subset"] == "all"].iloc[0].to_dict()
    summary = {"target": target, "folds": int(plan.folds), "seeds": list(plan.seeds), "members": int(plan.members),
               "datasets": [str(d) for d in datasets], "correction_of": plan.get("correction_of"),
               "two_stage": OmegaConf.to_container(cfg.two_stage) if cfg.get("two_stage") else None,
               "model": OmegaConf.to_container(cfg.model, resolve=True), "overall": overall,
               "breakdown": breakdown.to_dict(orient="records")}
    if int(plan.members) > 1:
        summary["calibration"] = calibration(predictions)
        write_json((out / "calibration.json"), summary["calibration"], indent=1)
    write_json((out / "cv_metrics.json"), summary, indent=1)
    plot_cv(predictions, out / "cv.png", f"{cfg.run_name}: {target}, {plan.folds}-fold x {len(plan.seeds)} seeds")
    log.info("cv %s (%d folds x %d seeds, %d member(s)):\n%s", target, plan.folds, len(plan.seeds), plan.members,
             breakdown.round(4).to_string(index=False))
    return float(overall["mae_mean"])


def _subsets(predictions: pd.DataFrame):
    yield "all", predictions
    for kind, part in predictions.groupby("kind"):
        yield f"kind={kind}", part
    hot = predictions["temperature_K"].fillna(0)
    yield "T<=300K", predictions[hot <= 300]
    for t, part in predictions.groupby(hot.round(-1)):
        yield f"T={t:g}K", part


def cv_breakdown(predictions: pd.DataFrame) -> pd.DataFrame:
    """Metrics per subset: per seed, then mean and standard deviation over seeds (and calibration)."""
    rows = []
    for name, part in _subsets(predictions):
        per_seed = []
        for _, p in part.groupby("seed"):
            m = regression_metrics(p["y_true"].to_numpy(), p["y_pred"].to_numpy())
            m["bias"] = float(p["error"].mean())
            if p["y_std"].notna().any():
                ratio = np.abs(p["error"]) / p["y_std"]
                m["within_1std"] = float((ratio <= 1).mean())
                m["within_2std"] = float((ratio <= 2).mean())
                m["std_median"] = float(p["y_std"].median())
            per_seed.append(m)
        if not per_seed:
            continue
        frame = pd.DataFrame(per_seed)
        row = {"subset": name, "n": int(frame["n"].iloc[0]), "seeds": len(frame)}
        for metric in [c for c in frame.columns if c != "n"]:
            row[f"{metric}_mean"] = float(frame[metric].mean())
            row[f"{metric}_std"] = float(frame[metric].std(ddof=1)) if len(frame) > 1 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def calibration(predictions: pd.DataFrame, coverage: float = 0.6827, flag_quantile: float = 0.95) -> dict:
    """How well the ensemble spread predicts the held-out error, and the factor that makes it right: ``std_scale``
    is the ``coverage`` quantile of |error| / spread (so that that fraction of errors falls inside one scaled
    spread, as for a normal error), and ``flag_std_eV`` the ``flag_quantile`` quantile of the scaled spread over
    the held-out structures: a prediction whose scaled spread exceeds it is unlike the data."""
    part = predictions[predictions["y_std"] > 0]
    ratio = np.abs(part["error"]) / part["y_std"]
    scale = float(np.quantile(ratio, coverage))
    return {"n": int(len(part)), "within_1std_raw": float((ratio <= 1).mean()),
            "within_2std_raw": float((ratio <= 2).mean()), "std_scale": scale,
            "within_1std_scaled": float((ratio <= scale).mean()), "within_2std_scaled": float((ratio <= 2 * scale).mean()),
            "flag_std_eV": float(np.quantile(scale * part["y_std"], flag_quantile)),
            "note": "from grouped k-fold cross-validation with an ensemble per fold (capml.models.cv)"}


def plot_cv(predictions: pd.DataFrame, path: Path, title: str) -> None:
    """Parity of the held-out predictions coloured by kind, and the error against temperature."""
    fig = Figure(figsize=(9, 4))
    ax, bx = fig.subplots(1, 2)
    kinds = predictions.groupby("kind")
    draw_parity(ax, ParityPanel({f"{kind} ({part['structure_id'].nunique()})": (part["y_true"], part["y_pred"])
                                 for kind, part in kinds}, xlabel="DFT gap (eV)", ylabel="held-out prediction (eV)"))
    for kind, part in kinds:
        bx.scatter(part["temperature_K"].fillna(0) + np.random.default_rng(0).uniform(-15, 15, len(part)),
                   part["error"], s=8, alpha=0.6, label=kind)
    bx.axhline(0, color="k", lw=0.8)
    bx.set(xlabel="temperature (K; relaxed at 0)", ylabel="prediction - DFT (eV)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
