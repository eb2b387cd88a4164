"""Train/validation/test extxyz files for mace_run_train, written from the capml dataset contract.

The held-out test split is taken first, grouped by ``config_id`` so no parent decoration is in two splits;
the remainder is split 95/5 into training and validation (the paper's ratio), again grouped. mace reads the
contract keys directly (``--energy_key REF_energy --forces_key REF_forces --stress_key REF_stress``), so the
frames are written unchanged.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from capml.errors import InputError
from capml.io.contract import (ENERGY_KEY, FORCES_KEY, STRESS_KEY, read_dataset, refuse_mixed_settings,
                               refuse_repeated_ids, write_dataset)
from capml.io.split import grouped_split
from capml.io.jsonio import write_json
from capml.io.paths import portable_path

from capml.keys import SPLITS  # ("train", "val", "test"): one vocabulary with the gap models
GROUP_KEY = "config_id"

log = logging.getLogger("capml.mlip")


@dataclass
class SplitFiles:
    train: str
    val: str
    test: str
    counts: dict[str, int]

    def path(self, split: str) -> Path:
        return Path(getattr(self, split))


def split_fractions(val_fraction: float, test_fraction: float) -> tuple[float, float, float]:
    """(train, val, test) fractions of the whole dataset: test held out, the rest split by val_fraction."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise InputError(f"mlip.{name}={value}: expected a fraction strictly between 0 and 1")
    rest = 1.0 - test_fraction
    return rest * (1.0 - val_fraction), rest * val_fraction, test_fraction


@dataclass
class SplitPlan:
    """The frames of the splits, drawn and checked, before anything is written (see :func:`plan_splits`)."""

    frames: list
    indices: list
    record: dict

    @property
    def counts(self) -> dict[str, int]:
        return {n: int(len(i)) for n, i in zip(SPLITS, self.indices)}

    def files(self, out_dir: str | Path) -> SplitFiles:
        """Where :meth:`write` puts the splits in ``out_dir``, with their frame counts."""
        return SplitFiles(**{name: str(Path(out_dir) / f"{name}.extxyz") for name in SPLITS}, counts=self.counts)

    def symbols(self) -> set[str]:
        return {s for idx in self.indices for i in idx for s in self.frames[i].get_chemical_symbols()}

    def write(self, out_dir: str | Path) -> SplitFiles:
        """``train.extxyz``, ``val.extxyz``, ``test.extxyz`` and ``splits.json`` in ``out_dir``."""
        files = self.files(out_dir)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        for name, idx in zip(SPLITS, self.indices):
            write_dataset(files.path(name), [self.frames[i] for i in idx])
        paths = {name: portable_path(getattr(files, name)) for name in SPLITS}
        write_json((Path(out_dir) / "splits.json"), asdict(files) | paths | self.record, indent=2)
        return files


def plan_splits(
    dataset: str | Path,
    val_fraction: float = 0.05,
    test_fraction: float = 0.1,
    seed: int = 0,
    require_stress: bool = True,
    pinned: str | Path | None = None,
    max_frames: int | None = None,
    extra_train: Sequence[str | Path] = (),
    group_key: str = GROUP_KEY,
) -> SplitPlan:
    """Read and check the dataset and ``extra_train`` and draw the splits, writing nothing (see :func:`write_splits`);
    every problem with the inputs is an InputError here. ``group_key``: the frame info that keeps frames together
    in one split (``config_id``; ``structure_id`` splits frame by frame, for a small set of unrelated structures)."""
    require = (ENERGY_KEY, FORCES_KEY, STRESS_KEY) if require_stress else (ENERGY_KEY, FORCES_KEY)
    frames = read_dataset(dataset, require=require)
    if max_frames is not None:
        if max_frames > len(frames):
            raise InputError(f"{dataset}: max_frames={max_frames} but the file holds {len(frames)} frames")
        frames = frames[:max_frames]
    fractions = split_fractions(val_fraction, test_fraction)
    if pinned is None:
        indices = grouped_split(frames, fractions, seed=seed, group_key=group_key)
    elif group_key != GROUP_KEY:
        raise InputError(f"mlip.pin_splits={pinned} with mlip.group_key={group_key}: pinned splits keep "
                         f"{GROUP_KEY} groups; expected mlip.group_key={GROUP_KEY} or pin_splits=null")
    else:
        indices = pinned_split(frames, fractions, seed, pinned)
    indices = fill_empty_splits(frames, indices, where=str(dataset), group_key=group_key)
    refuse_mixed_settings([dataset, *extra_train], ["REF"], "mlip.extra_train expects labels of the dataset's "
                          "fidelity and settings")
    extra = [(str(path), read_dataset(path, require=require)) for path in extra_train]
    refuse_repeated_ids([(where, [a.info.get("structure_id") for a in added])
                         for where, added in [(str(dataset), frames)] + extra],
                        "mlip.extra_train expects new structures")
    n_sampled = len(frames)
    frames = frames + [a for _, added in extra for a in added]
    indices[0] = np.concatenate([indices[0], np.arange(n_sampled, len(frames))])
    record = {
        "dataset": portable_path(dataset),
        "max_frames": max_frames,
        "extra_train": {portable_path(path): len(added) for path, added in extra},
        "seed": seed,
        "group_key": group_key,
        "pinned": portable_path(pinned) if pinned else None,
        "structure_ids": {n: [str(frames[i].info.get("structure_id", i)) for i in idx] for n, idx in zip(SPLITS, indices)},
        "config_ids": {n: sorted({str(frames[i].info.get(GROUP_KEY)) for i in idx}) for n, idx in zip(SPLITS, indices)},
    }
    return SplitPlan(frames, indices, record)


def write_splits(dataset: str | Path, out_dir: str | Path, *args, **kwargs) -> SplitFiles:
    """Write ``train.extxyz``, ``val.extxyz``, ``test.extxyz`` (and ``splits.json``) into ``out_dir``; the other
    arguments are :func:`plan_splits`'s.

    ``pinned`` is the ``splits.json`` of an earlier run (e.g. the base model's, on a smaller dataset): its
    config_id groups keep their split, so a model fine-tuned from it is never tested on frames it trained on;
    only new groups are dealt by :func:`grouped_split`. ``max_frames`` keeps the first frames only: a dataset grows
    by appending, so this reproduces a model trained while it was smaller. ``extra_train`` lists further dataset
    files whose frames all go to the training split, after the split is drawn (e.g. MD snapshots labelled by
    ``simulate.py stage=md_check``: active learning), so the validation and test splits stay comparable.
    """
    return plan_splits(dataset, *args, **kwargs).write(out_dir)


def fill_empty_splits(frames, indices: list[np.ndarray], where: str, group_key: str = GROUP_KEY) -> list[np.ndarray]:
    """Give an empty validation or test split the smallest training group: on a few tens of frames 5 % rounds to
    nothing, and mace needs a validation set. Raises InputError when there are too few groups for three splits."""
    groups = np.array([str(a.info.get(group_key)) for a in frames])
    indices = [np.asarray(i, int) for i in indices]
    for k in (1, 2):
        if len(indices[k]):
            continue
        train_groups, sizes = np.unique(groups[indices[0]], return_counts=True)
        if len(train_groups) < 2:
            raise InputError(
                f"{where}: {len(frames)} frames in {len(set(groups))} {group_key} groups are too few for "
                "train, val and test splits"
            )
        moved = train_groups[np.argmin(sizes)]
        log.warning("%s: the %s split came out empty; it takes group %s from train", where, SPLITS[k], moved)
        indices[k] = indices[0][groups[indices[0]] == moved]
        indices[0] = indices[0][groups[indices[0]] != moved]
    return indices


def pinned_split(frames, fractions, seed: int, pinned: str | Path) -> list[np.ndarray]:
    """Groups listed in an earlier ``splits.json`` keep their split; the others are split by grouped_split."""
    pinned = Path(pinned)
    try:
        earlier = json.loads(pinned.read_text())["config_ids"]
        if "valid" in earlier:  # splits.json written before the MLIP adopted the gap models' "val"
            earlier["val"] = earlier.pop("valid")
        split_of_group = {g: k for k, name in enumerate(SPLITS) for g in earlier[name]}
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise InputError(f"{pinned}: not a capml splits.json with 'config_ids' per split ({err})") from err
    groups = [str(a.info.get(GROUP_KEY)) for a in frames]
    new = np.flatnonzero([g not in split_of_group for g in groups])
    dealt = grouped_split([frames[i] for i in new], fractions, seed=seed) if len(new) else [[]] * len(SPLITS)
    out = []
    for k in range(len(SPLITS)):
        kept = [i for i, g in enumerate(groups) if split_of_group.get(g) == k]
        out.append(np.sort(np.concatenate([np.asarray(kept, int), new[np.asarray(dealt[k], int)]])))
    return out
