"""Labels where the simulation goes: relaxed configurations and the MD snapshots the gap models disagree on.

One round (``simulate.py stage=active_learning simulate.active_learning.round=R``):

1. relax every inequivalent decoration of the grid's compositions with the MLIP (the configurations stage);
2. batched Langevin MD of the lowest configurations over the grid of compositions x temperatures;
3. score every snapshot after equilibration by the spread (standard deviation) of an ensemble of gap models;
4. pick the most uncertain snapshots of each trajectory, at least ``min_spacing_fs`` apart in time;
5. write the relaxed configurations and the picked snapshots as label inputs (``relaxed.extxyz``,
   ``picked.extxyz``) and label them with the label stage (resumable, shardable, both fidelities);
6. record the round (``round.json``: models, grid, scores and picks).

Retraining on the labelled round is `train.py ... data.extra_train=[...]` (GNN) and `mlip.extra_train=[...]`
(MACE): the round's dataset is a dataset file like any other. Every input is written once per round and reused
by a rerun, so a killed round resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from ase import Atoms

from capml.errors import InputError


def relaxed_label_inputs(relaxed: Sequence[Atoms], prefix: str = "", source: str = "") -> list[Atoms]:
    """Label inputs for relaxed configurations: the structure alone (no MLIP results), with ``structure_id``
    "<prefix>relaxed_<config_id>", its ``config_id`` (split group), ``x``, temperature 0 and sampling
    "relaxed"."""
    out = []
    for atoms in relaxed:
        cid = str(atoms.info["config_id"])
        fresh = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        fresh.info.update(structure_id=f"{prefix}relaxed_{cid}", config_id=cid, x=float(atoms.info["x"]),
                          temperature=0.0, sampling="relaxed", multiplicity=int(atoms.info.get("multiplicity", 1)),
                          source=source or "relaxed by the MLIP")
        out.append(fresh)
    return out


def pick_uncertain(scores: np.ndarray, times_fs: np.ndarray, n_pick: int, min_spacing_fs: float) -> list[int]:
    """Indices of the ``n_pick`` highest ``scores`` of one trajectory, greedily, no two closer than
    ``min_spacing_fs`` in time (fewer when the trajectory is too short). Ties keep the earlier frame."""
    scores = np.asarray(scores, float)
    times_fs = np.asarray(times_fs, float)
    order = np.lexsort((times_fs, -scores))
    picked: list[int] = []
    for i in order:
        if len(picked) == n_pick:
            break
        if all(abs(times_fs[i] - times_fs[j]) >= min_spacing_fs for j in picked):
            picked.append(int(i))
    return sorted(picked, key=lambda i: times_fs[i])


def snapshot_label_inputs(run_name: str, frames: Sequence[Atoms], indices: Sequence[int], x: float,
                          temperature_K: float, scores: np.ndarray, prefix: str = "",
                          source: str = "") -> list[Atoms]:
    """Label inputs for picked MD snapshots: ``structure_id`` "<prefix><run>_t<time>fs", ``config_id``
    "<prefix><run>" (one MD run is one split group), sampling "md" and the ensemble spread that picked it."""
    out = []
    for i in indices:
        frame = frames[i]
        time_fs = float(frame.info.get("time_fs", i))
        atoms = Atoms(frame.numbers, frame.positions, cell=frame.cell, pbc=frame.pbc)
        atoms.info.update(structure_id=f"{prefix}{run_name}_t{time_fs:g}fs", config_id=f"{prefix}{run_name}",
                          x=float(x), temperature=float(temperature_K), sampling="md", time_fs=time_fs,
                          ensemble_std_eV=float(scores[i]), source=source or "MLIP MD snapshot")
        out.append(atoms)
    return out


def ensemble_spread(predictions: np.ndarray) -> np.ndarray:
    """Standard deviation over ensemble members (axis 0) per structure, the disagreement score."""
    predictions = np.asarray(predictions, float)
    if predictions.ndim != 2 or predictions.shape[0] < 2:
        raise InputError(f"ensemble predictions of shape {predictions.shape}: expected (members >= 2, structures)")
    return predictions.std(axis=0, ddof=1)


def picks_table(picked: Sequence[Atoms]) -> pd.DataFrame:
    return pd.DataFrame([{k: a.info[k] for k in ("structure_id", "config_id", "x", "temperature", "time_fs",
                                                  "ensemble_std_eV")} for a in picked])


def read_if_exists(path: Path) -> list[Atoms] | None:
    from capml.io.dataset import read_structures

    return read_structures(path) if path.is_file() else None
