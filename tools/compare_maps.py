"""Two Eg(x, T) maps side by side (the same MD, other gap models, or any two `gaps/gaps_summary.csv`): per point
the change of <Eg>_T, Eg(0) and ΔEg/Eg(0) against the first map's error bar, and a plot of ΔEg/Eg(0) against x.

    python tools/compare_maps.py runs/eg_map/gaps/gaps_summary.csv runs/eg_map_ens5/gaps/gaps_summary.csv \\
        --names round3 round5 --plot models/eg_map_ens5_vs_bundled.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ["boltzmann_gap_0_eV", "boltzmann_gap_T_eV", "boltzmann_gap_T_total_err_eV", "boltzmann_delta_gap_percent",
           "lowest_delta_gap_percent_err"]


def compare(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """One row per (x, T) both maps have: the second map's values minus the first's, and the first's error bars
    (the summary carries a ΔEg/Eg(0) error only for the lowest configuration; it stands for the Boltzmann value's)."""
    for name, table in (("first", first), ("second", second)):
        missing = [c for c in ["x", "temperature_K", *COLUMNS] if c not in table.columns]
        if missing:
            raise ValueError(f"{name} map: no column {missing[0]!r} (expected a gaps/gaps_summary.csv)")
    merged = first.merge(second, on=["x", "temperature_K"], suffixes=("_1", "_2"))
    return pd.DataFrame({
        "x": merged["x"], "T_K": merged["temperature_K"],
        "Eg0_1_eV": merged["boltzmann_gap_0_eV_1"],
        "dEg0_eV": merged["boltzmann_gap_0_eV_2"] - merged["boltzmann_gap_0_eV_1"],
        "EgT_1_eV": merged["boltzmann_gap_T_eV_1"], "EgT_2_eV": merged["boltzmann_gap_T_eV_2"],
        "dEgT_eV": merged["boltzmann_gap_T_eV_2"] - merged["boltzmann_gap_T_eV_1"],
        "EgT_err_1_eV": merged["boltzmann_gap_T_total_err_eV_1"],
        "pct_1": merged["boltzmann_delta_gap_percent_1"], "pct_2": merged["boltzmann_delta_gap_percent_2"],
        "dpct": merged["boltzmann_delta_gap_percent_2"] - merged["boltzmann_delta_gap_percent_1"],
        "pct_err_1": merged["lowest_delta_gap_percent_err_1"],
    })


def plot(table: pd.DataFrame, names: tuple[str, str], path: Path) -> None:
    from matplotlib.figure import Figure

    temperatures = sorted(table["T_K"].unique())
    fig = Figure(figsize=(3.2 * len(temperatures), 3.4))
    axes = np.atleast_1d(fig.subplots(1, len(temperatures), sharey=True))
    for ax, temperature in zip(axes, temperatures):
        rows = table[table["T_K"] == temperature]
        ax.errorbar(rows["x"], rows["pct_1"], yerr=rows["pct_err_1"], marker="o", ms=3, capsize=2, label=names[0])
        ax.plot(rows["x"], rows["pct_2"], marker="s", ms=3, label=names[1])
        ax.set_title(f"{temperature:g} K")
        ax.set_xlabel("x (Br fraction)")
    axes[0].set_ylabel("ΔEg/Eg(0) (%)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--names", nargs=2, default=("first", "second"))
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    for path in (args.first, args.second):
        if not path.is_file():
            print(f"error: {path}: not found; expected a gaps/gaps_summary.csv", file=sys.stderr)
            return 2
    try:
        table = compare(pd.read_csv(args.first), pd.read_csv(args.second))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(table.to_markdown(index=False, floatfmt=".3f"))
    inside = (table["dEgT_eV"].abs() <= table["EgT_err_1_eV"]).mean()
    print(f"\n<Eg>_T: {args.names[1]} - {args.names[0]} from {table['dEgT_eV'].min():+.3f} to "
          f"{table['dEgT_eV'].max():+.3f} eV (mean per T: "
          + ", ".join(f"{t:g} K {g:+.3f}" for t, g in table.groupby("T_K")["dEgT_eV"].mean().items())
          + f"); inside the first map's error bar at {inside:.0%} of the points")
    print(f"ΔEg/Eg(0): from {table['dpct'].min():+.1f} to {table['dpct'].max():+.1f} points "
          f"(error bars ± {table['pct_err_1'].min():.1f}-{table['pct_err_1'].max():.1f})")
    if args.plot:
        plot(table, tuple(args.names), args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
