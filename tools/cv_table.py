"""One markdown table from cross-validation runs (``cv_metrics.json`` of ``train.py experiment=cv``): MAE, RMSE
and R² over all held-out frames, and MAE per kind of structure and temperature, as mean ± standard deviation
over the fold draws (one draw: the value alone).

    python tools/cv_table.py runs/cv3/*/cv_metrics.json
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", nargs="+", type=Path, help="cv_metrics.json files")
    print(table(parser.parse_args().metrics))


if __name__ == "__main__":
    main()
