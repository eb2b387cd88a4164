"""Results people look at: prediction tables, parity plots, the two-stage comparison, sweep rankings."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import torch
from hydra.experimental.callback import Callback
from matplotlib.figure import Figure  # no pyplot: plots are written to files, whatever the backend
from omegaconf import DictConfig, OmegaConf
from torch_geometric.loader import DataLoader

from capml.io.jsonio import write_json
from capml.metrics import ParityPanel, parity_figure, regression_metrics

log = logging.getLogger(__name__)


@torch.inference_mode()
def prediction_table(module, datamodule, batch_size: int = 256) -> pd.DataFrame:
    """One row per frame of every non-empty split: structure_id, split, y_true, y_pred (target units)."""
    module = module.eval()
    rows = []
    for split, indices in datamodule.indices.items():
        if len(indices) == 0:
            continue
        predictions = [module.predict_physical(graph) for graph in
                       DataLoader(datamodule.subset(split), batch_size=batch_size, shuffle=False)]
        ids, y_true = datamodule.records(split)
        rows.append(pd.DataFrame({
            "structure_id": ids,
            "split": split,
            "y_true": y_true,
            "y_pred": torch.cat(predictions).double().numpy(),
        }))
    return pd.concat(rows, ignore_index=True)


def parity_plot(table: pd.DataFrame, path: Path, title: str = "", unit: str = "eV") -> None:
    """Predicted against reference, one panel per split of ``table`` (from :func:`prediction_table`) with its MAE."""
    panels = []
    for split in [s for s in ("train", "val", "test") if s in set(table["split"])]:
        rows = table[table["split"] == split]
        mae = regression_metrics(rows["y_true"], rows["y_pred"])["mae"]
        panels.append(ParityPanel({"": (rows["y_true"], rows["y_pred"])}, xlabel=f"reference ({unit})",
                                  ylabel=f"predicted ({unit})", title=f"{split}: MAE {mae:.3f} {unit}"))
    parity_figure(panels, title=title, shared_range=True).savefig(path, dpi=120)


def compare_two_stage(runs: dict[str, dict], out: Path) -> pd.DataFrame:
    """Table (CSV and JSON) and bar plot of val/test MAE, RMSE and R² of each stage of a two-stage run."""
    rows = [{"run": name, "target": m["target"], "split": split, "n_train": m["frames"]["train"], **m[split]}
            for name, m in runs.items() for split in ("val", "test") if split in m]
    table = pd.DataFrame(rows)
    table.to_csv(out / "two_stage.csv", index=False)
    write_json((out / "two_stage.json"), runs, indent=2)
    accurate = table[table["run"] != "pretrain"]
    fig = Figure(figsize=(8, 3.5))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("mae", "rmse")):
        pivot = accurate.pivot(index="split", columns="run", values=metric)
        pivot.plot.bar(ax=ax, rot=0)
        ax.set(ylabel=f"{metric.upper()} (eV)", title=f"{runs['scratch']['target']}: fine-tuned vs scratch")
    fig.tight_layout()
    fig.savefig(out / "two_stage.png", dpi=120)
    log.info("two-stage comparison:\n%s", table.to_string(index=False))
    return table


def rank_sweep(sweep_dir: str | Path, metric: str = "val/mae") -> pd.DataFrame:
    """One row per finished job of a multirun (its swept overrides and val/test metrics), best ``metric``
    first; written to sweep_ranking.csv in ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    split, name = metric.split("/")
    rows = []
    for path in sorted(sweep_dir.glob("**/metrics.json")):
        metrics = json.loads(path.read_text())
        if split not in metrics:
            continue
        # a two-stage job keeps its stages in subfolders; its overrides sit in the job folder above them
        job_dirs = [d for d in (path.parent, *path.parent.parents) if d == sweep_dir or sweep_dir in d.parents]
        overrides_file = next((d / ".hydra" / "overrides.yaml" for d in job_dirs
                               if (d / ".hydra" / "overrides.yaml").exists()), None)
        overrides = OmegaConf.load(overrides_file) if overrides_file else []
        row = {"job": str(path.parent.relative_to(sweep_dir)), **dict(o.split("=", 1) for o in overrides)}
        row.update({f"{s}/{k}": v for s in ("val", "test") for k, v in metrics.get(s, {}).items()})
        rows.append(row)
    table = pd.DataFrame(rows)
    # overrides shared by every job (data path, epochs, ...) say nothing about the ranking: keep the swept ones
    shared = [c for c in table.columns if c != "job" and "/" not in c and table[c].nunique(dropna=False) == 1]
    table = table.drop(columns=shared if len(table) > 1 else [])
    if len(table):
        ascending = name != "r2"
        table = table.sort_values(metric, ascending=ascending, ignore_index=True)
    table.to_csv(sweep_dir / "sweep_ranking.csv", index=False)
    return table


def summarise_two_stage(sweep_dir: str | Path) -> pd.DataFrame | None:
    """Fine-tuned against scratch over the two-stage jobs of a multirun (e.g. ``seed=0,1,...,9``, which also
    redraws the splits): mean and spread of each metric per split, the mean paired difference and how often
    the fine-tuned model wins. Written to two_stage_summary.csv/.png in ``sweep_dir``; None without
    two-stage jobs. One small split makes a single two-stage run noise; this is the comparison to quote."""
    sweep_dir = Path(sweep_dir)
    tables = []
    for path in sorted(sweep_dir.glob("**/two_stage.csv")):
        table = pd.read_csv(path)
        table["job"] = str(path.parent.relative_to(sweep_dir))
        tables.append(table)
    if not tables:
        return None
    runs = pd.concat(tables, ignore_index=True)
    runs = runs[runs["run"].isin(["finetune", "scratch"])]
    wide = runs.pivot_table(index=["job", "split"], columns="run", values=["mae", "rmse", "r2"]).dropna()
    rows = []
    for split, group in wide.groupby(level="split"):
        for metric in ("mae", "rmse", "r2"):
            fine, scratch = group[(metric, "finetune")], group[(metric, "scratch")]
            better = fine > scratch if metric == "r2" else fine < scratch
            rows.append({"split": split, "metric": metric, "jobs": len(group),
                         "finetune_mean": fine.mean(), "finetune_std": fine.std(ddof=1),
                         "scratch_mean": scratch.mean(), "scratch_std": scratch.std(ddof=1),
                         "mean_difference": (fine - scratch).mean(), "finetune_better": float(better.mean())})
    summary = pd.DataFrame(rows)
    summary.to_csv(sweep_dir / "two_stage_summary.csv", index=False)
    fig = Figure(figsize=(8, 3.5))
    axes = fig.subplots(1, 2)
    for ax, split in zip(axes, ("val", "test")):
        if split not in wide.index.get_level_values("split"):
            continue
        part = wide.xs(split, level="split")
        fine, scratch = part[("mae", "finetune")], part[("mae", "scratch")]
        top = max(fine.max(), scratch.max()) * 1.1
        ax.scatter(scratch, fine, s=18)
        ax.plot([0, top], [0, top], "k--", lw=1)
        ax.set(xlim=(0, top), ylim=(0, top), xlabel="scratch MAE (eV)", ylabel="fine-tuned MAE (eV)",
               title=f"{split}: {int((fine < scratch).sum())} of {len(part)} jobs better fine-tuned")
    fig.tight_layout()
    fig.savefig(sweep_dir / "two_stage_summary.png", dpi=120)
    log.info("two-stage over %d jobs:\n%s", wide.index.get_level_values("job").nunique(), summary.to_string(index=False))
    return summary


class RankSweep(Callback):
    """Hydra callback: after a multirun ends, rank its jobs into <sweep dir>/sweep_ranking.csv."""

    def __init__(self, metric: str = "val/mae"):
        self.metric = metric

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        table = rank_sweep(config.hydra.sweep.dir, self.metric)
        log.info("sweep ranking by %s (%d jobs) in %s/sweep_ranking.csv:\n%s", self.metric, len(table),
                 config.hydra.sweep.dir, table.head(10).to_string(index=False))
        summarise_two_stage(config.hydra.sweep.dir)
