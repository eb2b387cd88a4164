"""Seeded train/validation/test splits grouped by parent configuration."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms

from capml.errors import InputError


def grouped_split(
    frames: Sequence[Atoms],
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    group_key: str = "config_id",
) -> list[np.ndarray]:
    """Indices of each split; all frames sharing ``info[group_key]`` land in the same split.

    Groups are shuffled with ``seed`` and dealt greedily so each split's frame count approaches its
    fraction. Frames without the key form their own singleton groups.
    """
    fractions = np.asarray(fractions, dtype=float)
    if np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise InputError(f"split fractions {fractions.tolist()}: expected non-negative values summing to 1")
    labels = [str(a.info.get(group_key, f"__frame{i}")) for i, a in enumerate(frames)]
    groups, inverse = np.unique(labels, return_inverse=True)
    sizes = np.bincount(inverse, minlength=len(groups))
    order = np.random.default_rng(seed).permutation(len(groups))
    targets = fractions * len(frames)
    filled = np.zeros(len(fractions))
    assignment = np.empty(len(groups), dtype=int)
    for g in order:
        # the split furthest below its target takes the next group
        k = int(np.argmax(targets - filled))
        assignment[g] = k
        filled[k] += sizes[g]
    split_of_frame = assignment[inverse]
    return [np.flatnonzero(split_of_frame == k) for k in range(len(fractions))]


def grouped_folds(frames: Sequence[Atoms], n_folds: int, seed: int = 0, group_key: str = "config_id") -> np.ndarray:
    """Fold (0..n_folds-1) of every frame for grouped k-fold cross-validation: all frames sharing
    ``info[group_key]`` in one fold, groups shuffled with ``seed`` and dealt greedily so the folds hold about as
    many frames each. Computed on a whole file, the folds of any subset (a target labelled on some frames only)
    follow the same groups."""
    if n_folds < 2:
        raise InputError(f"cross-validation folds = {n_folds}: expected at least 2")
    labels = [str(a.info.get(group_key, f"__frame{i}")) for i, a in enumerate(frames)]
    groups, inverse = np.unique(labels, return_inverse=True)
    if len(groups) < n_folds:
        raise InputError(f"{len(groups)} groups of '{group_key}' cannot fill {n_folds} folds")
    sizes = np.bincount(inverse, minlength=len(groups))
    filled = np.zeros(n_folds)
    assignment = np.empty(len(groups), dtype=int)
    for g in np.random.default_rng(seed).permutation(len(groups)):
        k = int(np.argmin(filled))
        assignment[g] = k
        filled[k] += sizes[g]
    return assignment[inverse]
