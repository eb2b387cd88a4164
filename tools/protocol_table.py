"""The protocol study's numbers (README "Protocol"): Eg(0) of each 0 K reference and Eg(300 K) of a run, from the
bundled gap ensembles and from DFT on the very same structures.

    python tools/protocol_table.py --run runs/protocol/paper300 --discard-fs 1000 \\
        --dft data/ag3sbri/md_check_paper300.extxyz --references data/ag3sbri/static_cells.extxyz \\
        data/ag3sbri/relaxed.extxyz data/ag3sbri/relaxed_rattle.extxyz

- references: every labelled end-member structure of the given files (x = 0 or 1), its DFT gaps beside the
  ensembles' (HSE06 ± calibrated spread, PBEsol);
- run: per composition, the ensemble's <Eg> over every MD frame after ``--discard-fs`` of every replica (replicas'
  spread as the error, their range beside it), and its running mean against simulated time; several run folders
  (independent seeds of one protocol) pool their replicas;
- dft: the DFT gaps of labelled MD snapshots and the ensemble on the same snapshots (the model's error split from
  the protocol's).
"""

from __future__ import annotations

import argparse
import glob
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from ase.io import read

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from capml.models.predict import GapPredictor  # noqa: E402
from capml.simulate.gaps import equilibration_start  # noqa: E402
from capml.simulate.md import read_trajectory  # noqa: E402
from capml.simulate.run import MDRun  # noqa: E402

NAMES = {0.0: "Ag3SI", 1.0: "Ag3SBr"}
# Eg at 300 K (eV): the paper's Table 1 (experiment and its ML workflow)
PAPER_MARKS = {0.0: {"experiment 0.9": 0.9, "paper 1.0": 1.0}, 1.0: {"experiment 1.0": 1.0, "paper 1.1": 1.1}}


def references(files, hse, pbe) -> pd.DataFrame:
    frames = [a for f in files for a in read(f, ":") if float(a.info.get("x", -1)) in NAMES]
    mean, std = hse.predict(frames, return_std=True)
    rows = []
    for a, m, s, p in zip(frames, mean, std, pbe.predict(frames)):
        rows.append({"structure_id": a.info["structure_id"], "material": NAMES[float(a.info["x"])],
                     "volume_A3": round(a.get_volume(), 1), "dft_hse06_eV": a.info.get("gap_hse06", np.nan),
                     "model_hse06_eV": m, "model_hse06_std_eV": s, "dft_pbesol_eV": a.info.get("gap_pbesol", np.nan),
                     "model_pbesol_eV": p})
    return pd.DataFrame(rows)


def settled_fs(times_fs: np.ndarray, running_mean: np.ndarray, tolerance_eV: float) -> float:
    """The earliest time from which a running mean stays within ``tolerance_eV`` of its last value."""
    outside = np.flatnonzero(np.abs(running_mean - running_mean[-1]) > tolerance_eV)
    return float(times_fs[0] if not len(outside) else times_fs[min(outside[-1] + 1, len(times_fs) - 1)])


def run_average(folders: Path | list[Path], discard_fs: float, hse, until_fs: float = np.inf,
                tolerance_eV: float = 0.02) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per configuration and temperature, <Eg> over every replica of every run folder (independent seeds), with
    the replicas' standard error and range (largest minus smallest replica mean); and each replica's running mean.
    ``summary.attrs["replicas"]``: per replica its mean, the equilibration ``discard_fs=auto`` would pick on it
    (:func:`capml.simulate.gaps.equilibration_start`) and the time from which its running mean stays within
    ``tolerance_eV`` of its final value."""
    folders = [folders] if isinstance(folders, Path) else list(folders)
    rows, running = [], []
    for folder in folders:
        for path in sorted(glob.glob(str(folder / "md" / "*_T*.extxyz"))):
            frames = [f for f in read_trajectory(path) if f.info["time_fs"] <= until_fs]
            t = np.array([f.info["time_fs"] for f in frames])
            gaps = hse.predict(frames)
            kept = t >= discard_fs
            run = MDRun.from_name(Path(path).stem)
            cid, temperature = run.config_id, f"T{run.temperature_K:g}"
            replica = f"r{run.replica}" if len(folders) == 1 else f"{folder.name}/r{run.replica}"
            cumulative = np.cumsum(gaps[kept]) / np.arange(1, kept.sum() + 1)
            rows.append({"config_id": cid, "temperature": temperature, "replica": replica, "ps": t.max() / 1000,
                         "mean_eV": gaps[kept].mean(), "auto_discard_ps": t[equilibration_start(gaps)] / 1000,
                         "settled_ps": settled_fs(t[kept], cumulative, tolerance_eV) / 1000})
            running += [{"config_id": cid, "replica": replica, "time_ps": tt / 1000, "running_mean_eV": c}
                        for tt, c in zip(t[kept], cumulative)]
    per_replica = pd.DataFrame(rows)
    summary = per_replica.groupby(["config_id", "temperature"]).agg(
        replicas=("mean_eV", "size"), ps=("ps", "min"), mean_eV=("mean_eV", "mean"),
        stderr_eV=("mean_eV", lambda v: v.std(ddof=1) / np.sqrt(len(v))),
        range_eV=("mean_eV", lambda v: v.max() - v.min())).reset_index()
    summary.attrs["replicas"] = per_replica
    return summary, pd.DataFrame(running)


def dft_check(path, hse) -> pd.DataFrame:
    frames = [a for a in read(path, ":") if "gap_hse06" in a.info]
    model = hse.predict(frames)
    table = pd.DataFrame({"structure_id": [a.info["structure_id"] for a in frames],
                          "x": [float(a.info["x"]) for a in frames],
                          "dft_hse06_eV": [float(a.info["gap_hse06"]) for a in frames],
                          "dft_pbesol_eV": [float(a.info["gap_pbesol"]) for a in frames], "model_hse06_eV": model})
    summary = table.groupby("x").agg(n=("dft_hse06_eV", "size"), dft_mean_eV=("dft_hse06_eV", "mean"),
                                     dft_stderr_eV=("dft_hse06_eV", lambda v: v.std(ddof=1) / np.sqrt(len(v))),
                                     model_mean_eV=("model_hse06_eV", "mean"),
                                     dft_pbesol_mean_eV=("dft_pbesol_eV", "mean")).reset_index()
    summary["model_minus_dft_eV"] = summary["model_mean_eV"] - summary["dft_mean_eV"]
    return summary


def snapshot_time_fs(atoms) -> float:
    """MD time of a snapshot: its ``time_fs``, or the "_t<time>fs" ending of its structure_id (older files)."""
    if "time_fs" in atoms.info:
        return float(atoms.info["time_fs"])
    match = re.search(r"_t([0-9.]+)fs$", str(atoms.info.get("structure_id", "")))
    return float(match.group(1)) if match else np.nan


def plot(running: pd.DataFrame, dft: pd.DataFrame | None, path: Path,
         marks: dict[float, dict[str, float]] | None = None, title: str = "") -> None:
    """Running mean of the ensemble's gap against simulated time (one line per replica), the DFT snapshots at their
    times and the reference values (experiment, the paper) as horizontal lines, one panel per composition."""
    from matplotlib.figure import Figure

    configs = sorted(running["config_id"].unique())
    fig = Figure(figsize=(5 * len(configs), 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(configs), sharey=True))
    for ax, cid in zip(axes, configs):
        x = 1.0 if cid.startswith("k8") else 0.0
        for replica, g in running[running["config_id"] == cid].groupby("replica"):
            ax.plot(g["time_ps"], g["running_mean_eV"], lw=1, label=f"ensemble, running mean ({replica})")
        if dft is not None and len(dft):
            d = dft[dft["x"] == x]
            ax.scatter(d["time_ps"], d["dft_hse06_eV"], c="k", s=12, zorder=3, label="DFT HSE06 (Γ) snapshots")
        for name, value in (marks or {}).get(x, {}).items():
            ax.axhline(value, ls="--", lw=0.8, color="grey")
            ax.text(ax.get_xlim()[0], value, f" {name}", va="bottom", fontsize=7, color="grey")
        ax.set_title(f"{NAMES.get(x, cid)} {title}".strip())
        ax.set_xlabel("simulated time (ps)")
    axes[0].set_ylabel("Eg (eV)")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, nargs="+", help="simulate.py run folders; several: independent seeds "
                        "of one protocol, their replicas pooled")
    parser.add_argument("--discard-fs", type=float, default=1000.0)
    parser.add_argument("--until-fs", type=float, default=np.inf, help="only frames up to this time (two runs of "
                        "different length compared over one window)")
    parser.add_argument("--tolerance", type=float, default=0.02, help="eV: when a running mean has settled")
    parser.add_argument("--dft")
    parser.add_argument("--references", nargs="*", default=[])
    parser.add_argument("--hse06", default="models/gnn_gap_hse06")
    parser.add_argument("--pbesol", default="models/gnn_gap_pbesol")
    parser.add_argument("--running-csv", help="write the running means here")
    parser.add_argument("--plot", help="with --run: the running means, DFT snapshots and reference values (PNG)")
    args = parser.parse_args(argv)
    hse, pbe = GapPredictor.from_checkpoint(args.hse06), GapPredictor.from_checkpoint(args.pbesol)
    if args.references:
        print("## Eg(0) of each reference\n")
        print(references(args.references, hse, pbe).to_markdown(index=False, floatfmt=".3f"))
    if args.run:
        summary, running = run_average(args.run, args.discard_fs, hse, args.until_fs, args.tolerance)
        names = ", ".join(str(r) for r in args.run)
        print(f"\n## <Eg> of {names} from {args.discard_fs:g} to {args.until_fs:g} fs (model)\n")
        print(summary.to_markdown(index=False, floatfmt=".3f"))
        print(f"\n## Per replica: equilibration that discard_fs=auto picks, and when the running mean (from "
              f"{args.discard_fs:g} fs) stays within {args.tolerance:g} eV of its final value\n")
        print(summary.attrs["replicas"].to_markdown(index=False, floatfmt=".3f"))
        if args.running_csv:
            running.to_csv(args.running_csv, index=False)
        if args.plot:
            dft = None
            if args.dft:
                frames = [a for a in read(args.dft, ":") if "gap_hse06" in a.info]
                dft = pd.DataFrame({"x": [float(a.info["x"]) for a in frames],
                                    "time_ps": [snapshot_time_fs(a) / 1000 for a in frames],
                                    "dft_hse06_eV": [float(a.info["gap_hse06"]) for a in frames]})
            # the experiment's and the paper's values are at 300 K: drawn only beside 300 K runs
            at_300K = set(summary["temperature"]) == {"T300"}
            plot(running, dft, Path(args.plot), PAPER_MARKS if at_300K else None,
                 title=", ".join(sorted(set(summary["temperature"]))).replace("T", "") + " K")
    if args.dft:
        print(f"\n## DFT on the snapshots of {args.dft}\n")
        print(dft_check(args.dft, hse).to_markdown(index=False, floatfmt=".3f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
