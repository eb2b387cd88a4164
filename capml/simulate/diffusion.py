"""Mean-squared displacement per species along an MD trajectory: whether a sublattice hops (Ag in the
silver chalcohalides turns superionic) while the others stay on their sites.

Positions are unwrapped by the minimum-image step between consecutive frames (the frames must be closer in time than
an atom takes to cross half a cell), and the centre of mass is removed (Langevin lets the whole cell drift).

    python -m capml.simulate.diffusion runs/protocol/paper600_kmesh/md/*_T600_r*.extxyz --times-ps 5 15 30
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from ase import Atoms

from capml.errors import InputError


def unwrapped_positions(frames: Sequence[Atoms]) -> np.ndarray:
    """(frames, atoms, 3) Å: each frame's positions continued from the first frame by minimum-image steps."""
    positions = np.array([f.positions for f in frames])
    cell = frames[0].cell.array
    steps = np.diff(positions, axis=0) @ np.linalg.inv(cell)
    steps -= np.round(steps)
    return np.concatenate([positions[:1], positions[0] + np.cumsum(steps @ cell, axis=0)])


def mean_squared_displacement(frames: Sequence[Atoms], remove_com: bool = True) -> pd.DataFrame:
    """MSD (Å²) from the first frame, per species, one row per frame (column ``time_ps``)."""
    if len(frames) < 2:
        raise InputError("mean-squared displacement: need at least two frames")
    positions = unwrapped_positions(frames)
    if remove_com:
        masses = frames[0].get_masses()
        positions = positions - (positions * masses[None, :, None]).sum(1, keepdims=True) / masses.sum()
    squared = ((positions - positions[0]) ** 2).sum(-1)
    symbols = np.array(frames[0].get_chemical_symbols())
    if any("time_fs" not in f.info for f in frames):
        raise InputError("mean-squared displacement: every frame needs info 'time_fs' (an MD trajectory's frames)")
    table = {"time_ps": [float(f.info["time_fs"]) / 1000 for f in frames]}
    for species in dict.fromkeys(symbols):
        table[f"msd_{species}_A2"] = squared[:, symbols == species].mean(1)
    return pd.DataFrame(table)


def main(argv=None) -> int:
    from capml.simulate.md import read_trajectory

    parser = argparse.ArgumentParser(description="MSD per species of MD trajectories at given times")
    parser.add_argument("trajectories", nargs="+", type=Path)
    parser.add_argument("--times-ps", type=float, nargs="+", required=True)
    args = parser.parse_args(argv)
    rows = []
    try:
        for path in args.trajectories:
            msd = mean_squared_displacement(read_trajectory(path))
            for t in args.times_ps:
                row = msd.iloc[int(np.argmin(np.abs(msd["time_ps"] - t)))]
                rows.append({"trajectory": path.stem, **row.to_dict()})
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".2f"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
