"""One markdown table from cross-validation runs (``cv_metrics.json`` of ``train.py experiment=cv``): MAE, RMSE
and R² over all held-out frames, and MAE per kind of structure and temperature, as mean ± standard deviation
over the fold draws (one draw: the value alone).

    python tools/cv_table.py runs/cv3/*/cv_metrics.json
    python tools/cv_table.py runs/cv3/calibration_*/cv_metrics.json --structures r2_relaxed_ relaxed_

With ``--structures PREFIX ...``: per run and prefix, the held-out predictions (``cv_predictions.csv`` beside the
metrics) of the frames whose ``structure_id`` starts with it: MAE, bias, how many within ``--within-eV`` of DFT,
the fraction inside one predicted σ (stretched by ``calibration.json``'s ``std_scale`` where the run has one) and
the worst frame.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

COLUMNS = [("all", "mae"), ("all", "rmse"), ("all", "r2"), ("kind=sampled", "mae"), ("kind=relaxed", "mae"),
           ("kind=md", "mae"), ("T<=300K", "mae"), ("T=600K", "mae")]


def cell(row: dict | None, metric: str) -> str:
    if row is None:
        return "-"
    mean, std = row[f"{metric}_mean"], row.get(f"{metric}_std")
    digits = 2 if metric == "r2" else 3
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def table(paths: list[Path]) -> str:
    lines = ["| run | target | members | fold draws | frames | MAE (eV) | RMSE | R² | sampled | relaxed | MD "
             "| ≤ 300 K | 600 K |", "|" + "---|" * 13]
    for path in paths:
        metrics = json.loads(path.read_text())
        rows = {r["subset"]: r for r in metrics["breakdown"]}
        cells = [cell(rows.get(subset), metric) for subset, metric in COLUMNS]
        lines.append(f"| {path.parent.name} | {metrics['target']} | {metrics['members']} | {len(metrics['seeds'])} "
                     f"| {rows['all']['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def structures_table(paths: list[Path], prefixes: list[str], within_eV: float) -> str:
    import pandas as pd

    lines = [f"| run | frames | MAE (eV) | bias (eV) | within {within_eV:g} eV | inside 1 σ | worst (eV) |",
             "|" + "---|" * 7]
    for path in paths:
        predictions = pd.read_csv(path.parent / "cv_predictions.csv")
        calibration = path.parent / "calibration.json"
        scale = json.loads(calibration.read_text())["std_scale"] if calibration.exists() else 1.0
        for prefix in prefixes:
            rows = predictions[predictions["structure_id"].str.startswith(prefix)]
            if rows.empty:
                continue
            error = rows["y_pred"] - rows["y_true"]
            worst = error.abs().idxmax()
            inside = (error.abs() <= scale * rows["y_std"]).mean() if rows["y_std"].notna().all() else math.nan
            lines.append(f"| {path.parent.name} `{prefix}*` | {len(rows)} | {error.abs().mean():.3f} "
                         f"| {error.mean():+.3f} | {(error.abs() <= within_eV).sum()} of {len(rows)} "
                         f"| {inside:.0%} | `{rows.loc[worst, 'structure_id']}` {error[worst]:+.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", nargs="+", type=Path, help="cv_metrics.json files")
    parser.add_argument("--structures", nargs="+", metavar="PREFIX",
                        help="instead: held-out predictions of the frames whose structure_id starts with PREFIX")
    parser.add_argument("--within-eV", type=float, default=0.05)
    args = parser.parse_args()
    if args.structures:
        print(structures_table(args.metrics, args.structures, args.within_eV))
    else:
        print(table(args.metrics))


if __name__ == "__main__":
    main()
