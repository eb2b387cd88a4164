"""Energy, force and stress errors of MLIPs on labelled sets none of them trained on.

    python tools/compare_mlips.py --model round1=OLD.model --model refit=models/mace_finetuned.model \
        al_round1=data/ag3sbri/al_round1.extxyz md_seed2=data/ag3sbri/md_check_round1_seed2.extxyz
(a set may list several files separated by commas)
"""

from __future__ import annotations

import argparse

from capml.io.contract import read_dataset
from capml.mlip.evaluate import split_errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="NAME=PATH of a MACE model")
    parser.add_argument("sets", nargs="+", help="NAME=FILE[,FILE...] of labelled frames")
    args = parser.parse_args()
    models = dict(m.split("=", 1) for m in args.model)
    for spec in args.sets:
        name, paths = spec.split("=", 1)
        frames = [f for p in paths.split(",") for f in read_dataset(p)]
        for label, path in models.items():
            metrics, _ = split_errors(path, frames)
            print(f"{name} ({len(frames)} frames) {label}: " + ", ".join(
                f"{q} MAE {v['mae']:.4g} {v['unit']} (R2 {v['r2']:.3f})" for q, v in metrics.items()))


if __name__ == "__main__":
    main()
