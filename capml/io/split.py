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
