"""Labelled structures the models did not train on, against the bundled models: per structure the DFT forces and
stress (at an MLIP minimum they say how far it is from DFT's) and each gap ensemble's prediction ± calibrated
spread against the DFT gap; MAE, bias and calibration per fidelity and per temperature.

    python tools/check_gaps.py data/ag3sbri/relaxed_r2.extxyz [--out models/relaxed_check_round2.csv] \
        [--exclude TRAINING.extxyz]     # leave out the structure_ids of a file the models trained on
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from ase.io import read
from ase.units import GPa

from capml.io.contract import read_dataset
from capml.models.predict import GapPredictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", help="labelled extxyz files (both gap fidelities)")
    parser.add_argument("--models", default="models", help="folder with gnn_gap_pbesol/ and gnn_gap_hse06/")
    parser.add_argument("--exclude", help="a file whose structure_ids are left out")
    parser.add_argument("--out", help="per-structure CSV")
    args = parser.parse_args()
    frames = [f for p in args.datasets for f in read_dataset(p, gaps=["pbesol", "hse06"])]
    if args.exclude:
        seen = {a.info["structure_id"] for a in read(args.exclude, ":")}
        frames = [f for f in frames if f.info["structure_id"] not in seen]
    fidelities = ("pbesol", "hse06")
    members = {f: GapPredictor.from_checkpoint(f"{args.models}/gnn_gap_{f}").predict_members(frames)
               for f in fidelities}  # deviations already stretched by each ensemble's calibration
    table = pd.DataFrame([{
        "structure_id": a.info["structure_id"], "config": a.info["config_id"], "x": a.info["x"],
        "temperature_K": a.info.get("temperature", 0.0),
        "max_force_eV_A": float(np.linalg.norm(a.arrays["REF_forces"], axis=1).max()),
        "max_stress_GPa": float(np.abs(a.info["REF_stress"]).max() / GPa),
        **{f"dft_{f}_eV": a.info[f"gap_{f}"] for f in fidelities},
        **{f"gnn_{f}_eV": float(members[f][:, k].mean()) for f in fidelities},
        **{f"gnn_{f}_std_eV": float(members[f][:, k].std(ddof=1)) for f in fidelities}} for k, a in enumerate(frames)])
    for f in fidelities:
        table[f"err_{f}_eV"] = table[f"gnn_{f}_eV"] - table[f"dft_{f}_eV"]
    print(table.round(3).to_string(index=False))
    for f in fidelities:
        err, std = table[f"err_{f}_eV"], table[f"gnn_{f}_std_eV"]
        print(f"{f}: {len(err)} structures, MAE {err.abs().mean():.3f} eV, bias {err.mean():+.3f} eV, within 0.05 eV "
              f"{int((err.abs() <= 0.05).sum())}, inside 1 calibrated sigma {(err.abs() <= std).mean():.0%}, "
              f"inside 2 {(err.abs() <= 2 * std).mean():.0%}")
    print("MAE per temperature (eV):")
    print(table.groupby("temperature_K")[[f"err_{f}_eV" for f in fidelities]].apply(
        lambda d: d.abs().mean()).round(3).to_string())
    print(f"DFT forces: largest {table.max_force_eV_A.max():.3f} eV/A, median per structure "
          f"{table.max_force_eV_A.median():.3f}; largest stress {table.max_stress_GPa.max():.2f} GPa")
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
