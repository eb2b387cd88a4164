"""The cell of NPT runs (README "Protocol", the cell at T): per trajectory, the mean cubic lattice parameter
a = (V / n_cells)^(1/3) over the frames between --discard-fs and --until-fs, with its standard error from
blocks of --block-fs (the barostat makes the cell slow to decorrelate).

    python tools/npt_cell.py runs/protocol/npt300_gamma runs/protocol/npt300_kmesh --discard-fs 1000 --until-fs 4000
"""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from capml.simulate.md import read_trajectory


def cell_table(runs, discard_fs: float, until_fs: float, n_cells: int, block_fs: float) -> pd.DataFrame:
    rows = []
    for run in runs:
        paths = sorted(glob.glob(str(Path(run) / "md" / "*_T*.extxyz")))
        if not paths:
            raise SystemExit(f"error: {run}: no MD trajectories in {Path(run) / 'md'}")
        for path in paths:
            frames = read_trajectory(path)
            t = np.array([f.info["time_fs"] for f in frames])
            a = np.array([(f.get_volume() / n_cells) ** (1 / 3) for f in frames])
            kept = (t >= discard_fs) & (t <= until_fs)
            blocks = [a[kept & (t >= s) & (t < s + block_fs)].mean() for s in np.arange(discard_fs, t[kept].max(), block_fs)
                      if (kept & (t >= s) & (t < s + block_fs)).any()]
            rows.append({"run": str(run), "trajectory": Path(path).stem, "a_start_A": a[0], "a_mean_A": a[kept].mean(),
                         "a_stderr_A": np.std(blocks, ddof=1) / np.sqrt(len(blocks)) if len(blocks) > 1 else np.nan,
                         "a_min_A": a[kept].min(), "a_max_A": a[kept].max(), "window_ps": (t[kept].max() - t[kept].min()) / 1000})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="simulate.py workdirs with md/ trajectories")
    parser.add_argument("--discard-fs", type=float, default=1000.0)
    parser.add_argument("--until-fs", type=float, default=np.inf)
    parser.add_argument("--n-cells", type=int, default=8, help="primitive cells in the supercell (2x2x2: 8)")
    parser.add_argument("--block-fs", type=float, default=1000.0)
    args = parser.parse_args(argv)
    print(cell_table(args.runs, args.discard_fs, args.until_fs, args.n_cells, args.block_fs)
          .to_markdown(index=False, floatfmt=".4f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
