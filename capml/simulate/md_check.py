"""Does the MD stay where the models are right? Reference labels for MD snapshots against the MLIP and the GNN.

An MLIP fitted on a few hundred structures can have "holes": regions it places far too low in energy, where MD
then goes and stays. Snapshots spread over each trajectory are labelled with the reference method (the label
stage, resumable); the MLIP energy and forces and the GNN gap are compared with those labels per snapshot, so
the time at which a trajectory leaves the models' domain shows up. The labelled snapshots are a dataset in
capml's contract, ready to be added to the training data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from ase import Atoms
from matplotlib.figure import Figure

from capml.errors import InputError

TABLE = "md_check.csv"


def pick_snapshots(runs: Sequence[tuple[str, Sequence[Atoms]]], per_run: int, prefix: str = "") -> list[Atoms]:
    """``per_run`` frames of each trajectory, evenly spaced in time and ending with the last one (the start,
    the relaxed structure, is left out), each with ``structure_id`` "<prefix><run>_t<time>fs" (a prefix tells
    snapshots of different MD runs apart once their files are used together, e.g. as extra training data)."""
    if per_run < 1:
        raise InputError(f"simulate.md_check.snapshots_per_run={per_run}: expected at least 1")
    picked = []
    for name, frames in runs:
        if len(frames) < 2:
            raise InputError(f"trajectory {name}: {len(frames)} frame(s), expected an MD run; run `simulate.py "
                             "stage=md` first")
        positions = np.unique(np.linspace(0, len(frames) - 1, per_run + 1)[1:].round().astype(int))
        picked += [snapshot(frames[k], name, prefix) for k in positions]
    return picked


def snapshots_at(runs: Sequence[tuple[str, Sequence[Atoms]]], times_fs: Sequence[float], prefix: str = "",
                 where: str = "") -> list[Atoms]:
    """The frames of each trajectory at exactly the MD times ``times_fs`` (decorrelated snapshots chosen by the
    study, e.g. one every 1.5 ps after equilibration), ids as in :func:`pick_snapshots`."""
    picked = []
    for name, frames in runs:
        by_time = {float(f.info["time_fs"]): f for f in frames}
        missing = [t for t in times_fs if float(t) not in by_time]
        if missing:
            saved = sorted(by_time)
            raise InputError(f"{where or name}: trajectory {name} has no frame at {missing} fs (saved: "
                             f"{saved[0]:g}..{saved[-1]:g} fs every {saved[1] - saved[0]:g} fs)")
        picked += [snapshot(by_time[float(t)], name, prefix) for t in times_fs]
    return picked


def flagged_snapshots(runs: Sequence[tuple[str, Sequence[Atoms]]], series: pd.DataFrame, count: int,
                      prefix: str = "") -> list[Atoms]:
    """The ``count`` snapshots the gaps stage flagged as outside the training data (``gaps/gap_series.csv``: frames
    after equilibration whose ensemble spread is above the calibrated flag) with the largest spread, at most one per
    trajectory, so that labelling them covers as many runs as it can; ids as in :func:`pick_snapshots`."""
    from capml.simulate.run import MDRun

    flagged = series[series["outside_training_data"].astype(bool) & series["used"].astype(bool)]
    if flagged.empty:
        return []
    keys = ["config_id", "temperature_K", "replica"]
    worst = flagged.loc[flagged.groupby(keys)["gap_std_eV"].idxmax()].nlargest(count, "gap_std_eV")
    by_run = {(r.config_id, r.temperature_K, r.replica): (name, frames)
              for name, frames in runs for r in [MDRun.from_name(name)]}
    picked = []
    for row in worst.itertuples(index=False):
        name, frames = by_run[(row.config_id, float(row.temperature_K), int(row.replica))]
        frame, = [f for f in frames if float(f.info["time_fs"]) == float(row.time_fs)]
        atoms = snapshot(frame, name, prefix)
        atoms.info["gap_std_eV"] = float(row.gap_std_eV)
        picked.append(atoms)
    return picked


def snapshot(frame: Atoms, name: str, prefix: str = "") -> Atoms:
    """One MD frame as a structure to label: positions and cell only, with the run it came from."""
    atoms = Atoms(frame.numbers, frame.positions, cell=frame.cell, pbc=frame.pbc)
    time_fs = float(frame.info.get("time_fs", 0.0))
    atoms.info.update(structure_id=f"{prefix}{name}_t{time_fs:g}fs", system=name, time_fs=time_fs,
                      md_kinetic_temperature_K=float(frame.info.get("kinetic_temperature_K", np.nan)),
                      config_id=f"{prefix}{name}", sampling="md")
    return atoms


def compare(labelled: Sequence[Atoms], calculator, gap_model) -> pd.DataFrame:
    """One row per labelled snapshot: reference against MLIP energy (meV/atom) and forces (MAE, max, eV/Å), and
    the GNN's gap against the reference of the fidelity it was trained on (``gap_model.fidelity``: a HSE06 model
    only against gap_hse06; NaN on a snapshot without it), with the ensemble spread where the model has one."""
    if not labelled:
        raise InputError("md_check: no labelled snapshots to compare (did every label fail?)")
    predicted = spread = None
    fidelity = None
    if gap_model is not None:
        fidelity = gap_model.fidelity
        predicted, spread = (np.asarray(v, dtype=float) for v in gap_model.predict(list(labelled), return_std=True))
    rows = []
    for i, ref in enumerate(labelled):
        atoms = ref.copy()
        atoms.calc = calculator
        n = len(atoms)
        e_mlip, f_mlip = atoms.get_potential_energy() / n, atoms.get_forces()
        e_ref, f_ref = float(ref.info["REF_energy"]) / n, ref.arrays["REF_forces"]
        df = f_mlip - f_ref
        gap_ref = float(ref.info.get(f"gap_{fidelity}", np.nan)) if fidelity else np.nan
        gap_gnn = float(predicted[i]) if predicted is not None else np.nan
        gap_std = float(spread[i]) if spread is not None else np.nan
        rows.append({
            "structure_id": ref.info["structure_id"], "system": ref.info["system"], "time_fs": ref.info["time_fs"],
            "energy_ref_eV_per_atom": e_ref, "energy_mlip_eV_per_atom": e_mlip,
            "energy_error_meV_per_atom": 1000.0 * (e_mlip - e_ref),
            "force_mae_eV_A": float(np.abs(df).mean()), "force_max_error_eV_A": float(np.abs(df).max()),
            "force_rms_ref_eV_A": float(np.sqrt((f_ref ** 2).mean())),
            "gap_fidelity": fidelity or "", "gap_ref_eV": gap_ref, "gap_gnn_eV": gap_gnn,
            "gap_gnn_std_eV": gap_std, "gap_error_eV": gap_gnn - gap_ref,
        })
    return pd.DataFrame(rows).sort_values(["system", "time_fs"], ignore_index=True)


def plot(table: pd.DataFrame, path: Path) -> None:
    """Energy error, force MAE and gap error against MD time, one line per trajectory."""
    panels = [("energy_error_meV_per_atom", "MLIP - reference energy (meV/atom)"),
              ("force_mae_eV_A", "MLIP force MAE (eV/Å)"), ("gap_error_eV", "GNN - reference gap (eV)")]
    panels = [p for p in panels if table[p[0]].notna().any()]
    fig = Figure(figsize=(4.2 * len(panels), 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (column, label) in zip(axes, panels):
        for system, part in table.groupby("system"):
            ax.plot(part["time_fs"], part[column], "o-", ms=4, label=system)
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set(xlabel="MD time (fs)", ylabel=label)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    """``python -m capml.simulate.md_check RUN OUT --times-fs T ... | --flagged N``: snapshots of a simulate.py run
    (``RUN/md``) as a structures file for ``stage=label``: every trajectory's frames at the given MD times, or the N
    frames the gaps stage flagged as outside the training data (:func:`flagged_snapshots`); frames already in OUT
    (by structure_id) are kept and not written twice, so a longer run adds its later snapshots."""
    import argparse

    import sys

    from capml.io.contract import read_dataset, write_dataset
    from capml.simulate.md import read_trajectory
    from capml.simulate.run import MDRun

    parser = argparse.ArgumentParser(description=main.__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a simulate.py workdir with md/ and configurations/")
    parser.add_argument("out", type=Path)
    pick = parser.add_mutually_exclusive_group(required=True)
    pick.add_argument("--times-fs", type=float, nargs="+", help="the frames of every trajectory at these MD times")
    pick.add_argument("--flagged", type=int, metavar="N", help="the N snapshots of largest ensemble spread among "
                      "those the gaps stage flagged (RUN/gaps/gap_series.csv), at most one per trajectory")
    parser.add_argument("--prefix", default="")
    args = parser.parse_args(argv)
    try:
        table = args.run / "configurations" / "energies.csv"
        if not table.is_file():
            raise InputError(f"{table}: not found; expected a simulate.py run after stage=configurations")
        x_of = dict(pd.read_csv(table)[["config_id", "x"]].itertuples(index=False))
        paths = sorted((args.run / "md").glob("*_T*.extxyz"))
        if not paths:
            raise InputError(f"{args.run / 'md'}: no trajectories; run `simulate.py stage=md` first")
        runs = {path.stem: MDRun.from_name(path.stem) for path in paths}
        trajectories = [(path.stem, read_trajectory(path)) for path in paths]
        if args.flagged is not None:
            series = args.run / "gaps" / "gap_series.csv"
            if not series.is_file():
                raise InputError(f"{series}: not found; expected a simulate.py run after stage=gaps")
            new = flagged_snapshots(trajectories, pd.read_csv(series), args.flagged, args.prefix)
        else:
            new = snapshots_at(trajectories, args.times_fs, args.prefix, str(args.run))
        for atoms in new:
            run = runs[atoms.info["system"]]
            atoms.info.update(x=float(x_of[run.config_id]), temperature=run.temperature_K,
                              source=f"{args.run} {atoms.info['system']} at {atoms.info['time_fs']:g} fs")
        old = read_dataset(args.out, require=[]) if args.out.exists() else []
        have = {a.info["structure_id"] for a in old}
        added = [a for a in new if a.info["structure_id"] not in have]
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_dataset(args.out, list(old) + added)
    print(f"{args.out}: {len(added)} snapshots added ({len(old) + len(added)} in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
