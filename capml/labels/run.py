"""Resumable labelling of a structure set into a dataset file.

Each labelled structure is appended (one write, fsync) as soon as it is done; a rerun skips every
structure already in the output or recorded as failed. Failures go to ``<out>.failures.jsonl`` with
their error and do not stop the batch.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from ase import Atoms
from tqdm.auto import tqdm

from capml.errors import InputError
from capml.io.contract import GAP_PREFIX, DatasetSettings, read_settings, settings_path, validate_frames, write_settings
from capml.io.extxyz import append_frame, failures_path, keep_last_per_structure, read_complete_frames, read_failures
from capml.io.shards import merge_shards, run_lock, shard_files, shard_path
from capml.labels.base import Labeller

log = logging.getLogger(__name__)


def make_labeller(cfg) -> Labeller:
    """The labeller a composed config names (``labels.labeller``, instantiated by Hydra); a config it cannot build
    is one InputError line."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(cfg.labels.labeller)
    except InstantiationException as err:
        raise InputError(f"labels.labeller: {' '.join(str(err).split())}") from err


@dataclass
class LabelSummary:
    labelled: int
    skipped: int
    failed: int
    seconds: float


def structure_ids(structures: Sequence[Atoms], where: str) -> list[str]:
    ids = []
    for i, atoms in enumerate(structures):
        sid = atoms.info.get("structure_id")
        if sid is None:
            raise InputError(f"{where}: frame {i} has no info key 'structure_id' (the resume key)")
        ids.append(str(sid))
    if len(set(ids)) != len(ids):
        raise InputError(f"{where}: 'structure_id' values are not unique")
    return ids


def run_labels(
    structures: Sequence[Atoms],
    out: str | Path,
    labeller: Labeller,
    subsets: Mapping[str, int] | None = None,
    limit: int | None = None,
    retry_failed: bool = False,
    where: str = "<structures>",
    shard: tuple[int, int] | None = None,
) -> LabelSummary:
    """Label ``structures`` into ``out``.

    ``subsets`` maps an optional fidelity of the labeller to a stride: structure i (in input order)
    gets that fidelity when ``i % stride == 0``, so the subset is fixed by the input, not by timing; stride 0
    gives it to none.
    ``limit`` stops after that many new labels (for a time-boxed run).
    ``shard=(i, n)`` labels only the structures whose input index is i mod n, into their own file
    ``shard_path(out, i, n)`` (settings and failures beside it), so that n processes (both cores, a SLURM array)
    label one set at once; structures finished in ``out`` itself are skipped. ``merge_shards`` puts the shard
    files back into ``out`` in input order.
    """
    subsets = dict(subsets or {})
    for name in subsets:
        if name not in labeller.optional:
            raise InputError(f"labels.subsets: '{name}' is not an optional fidelity of this labeller "
                             f"(expected one of {list(labeller.optional)})")
        if not isinstance(subsets[name], int) or isinstance(subsets[name], bool) or subsets[name] < 0:
            raise InputError(f"labels.subsets.{name}={subsets[name]!r}: expected a stride, an integer >= 0 "
                             "(1: every structure, n: every n-th, 0: none)")
    subsets = {name: stride for name, stride in subsets.items() if stride > 0}
    ids = structure_ids(structures, where)
    main_out = Path(out)
    requested = DatasetSettings(_requested_settings(labeller, subsets))
    read_settings(main_out).merged_with(requested, where=str(main_out))
    mine = range(len(ids))
    if shard is not None:
        index, count = shard
        others = [f.name for f in shard_files(main_out) if not f.name.endswith(f"of{count}{main_out.suffix}")]
        if others:
            raise InputError(f"label.shard={index}/{count}: {main_out} has shard files of another count ({others[0]});"
                             " merge them first (an unsharded run or --merge-shards)")
        out = shard_path(main_out, index, count)
        mine = range(index, len(ids), count)
        main_out.parent.mkdir(parents=True, exist_ok=True)
        lock = run_lock(out)
    else:  # one unsharded run per output; it first takes in what shard runs left (refused while one still runs)
        main_out.parent.mkdir(parents=True, exist_ok=True)
        lock = run_lock(main_out, blocking=False, busy=f"{main_out}: another label run is writing this dataset; "
                        "wait for it, or share the work with label.shard=i/n")
    with lock:  # a refused run removes the lock file it made
        if shard is None:
            merge_shards(main_out, ids)
        return _label_into(structures, ids, mine, Path(out), main_out, labeller, requested, subsets, limit,
                           retry_failed)


def _label_into(structures, ids, mine, out: Path, main_out: Path, labeller: Labeller, requested: DatasetSettings,
                subsets: Mapping[str, int], limit: int | None, retry_failed: bool) -> LabelSummary:
    settings = read_settings(out).merged_with(requested, where=str(out))
    out.parent.mkdir(parents=True, exist_ok=True)

    # a kill between appending a relabelled frame and dropping the old one; frames in input order
    keep_last_per_structure(out, ids)
    done = {str(a.info.get("structure_id")): a for a in read_complete_frames(out)}
    if done and not settings_path(out).exists():
        raise InputError(f"{out}: holds {len(done)} labelled frames but no label settings "
                         f"({settings_path(out).name}); cannot tell which labeller made them, so none is added; "
                         "label into a new file")
    if out != main_out:  # a shard: what the merged file already holds counts as done unless the shard redid it
        for atoms in read_complete_frames(main_out, repair=False):
            done.setdefault(str(atoms.info.get("structure_id")), atoms)
    for i in mine:  # resume only the same structures: an id whose structure changed is not "done"
        if ids[i] in done:
            refuse_moved(done[ids[i]], structures[i], f"{out}: structure_id {ids[i]!r}")
    labelled_keys = {sid: set(atoms.info) for sid, atoms in done.items()}
    own_failures = read_failures(out, repair=True)  # this run appends to it: a torn tail is cut first
    failed = {} if retry_failed else {**read_failures(main_out), **own_failures}
    # finished: labelled, with every optional fidelity its subset asks for (one dropped as wrong is redone)
    todo = [i for i in mine if ids[i] not in failed and not (
        ids[i] in labelled_keys and {GAP_PREFIX + name for name in _extras(i, subsets)} <= labelled_keys[ids[i]])]
    skipped = len(mine) - len(todo)
    if limit is not None:
        todo = todo[:limit]
    if todo or out == main_out:  # a shard with nothing to do leaves no files behind
        write_settings(out, settings)
    start = time.perf_counter()
    labelled = n_failed = 0
    for i in tqdm(todo, desc=f"labelling ({labeller.fidelity})", unit="structure"):
        extras = _extras(i, subsets)
        t0 = time.perf_counter()
        try:
            labels = labeller.label(structures[i], extras)
            frame = labels.apply_to(structures[i])
            frame.info["label_seconds"] = round(time.perf_counter() - t0, 2)
            validate_frames([frame], where=f"labels of {ids[i]}")
        except Exception as err:  # recorded and skipped; the batch goes on
            n_failed += 1
            log.warning("labelling %s failed: %s", ids[i], err)
            with open(failures_path(out), "a") as handle:  # one write and fsync: a kill leaves a whole line or none
                handle.write(json.dumps({"structure_id": ids[i], "error": f"{type(err).__name__}: {err}",
                                         "traceback": traceback.format_exc(limit=3)}) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            continue
        append_frame(out, frame)
        if ids[i] in labelled_keys:
            keep_last_per_structure(out, ids)
        labelled += 1
    return LabelSummary(labelled, skipped, n_failed, time.perf_counter() - start)


def refuse_moved(labelled: Atoms, structure: Atoms, where: str, tolerance_A: float = 1e-4) -> None:
    """InputError when a labelled frame is not the input structure of the same id any more (re-sampled input):
    other species, another cell or atoms moved by more than ``tolerance_A``."""
    if len(labelled) != len(structure) or list(labelled.numbers) != list(structure.numbers):
        moved = "has other atoms"
    elif not np.allclose(labelled.cell.array, structure.cell.array, atol=tolerance_A):
        moved = "has another cell"
    else:
        delta = structure.positions - labelled.positions
        delta -= np.rint(delta @ np.linalg.inv(structure.cell.array)) @ structure.cell.array  # periodic images
        shift = float(np.linalg.norm(delta, axis=1).max()) if len(delta) else 0.0
        if shift <= tolerance_A:
            return
        moved = f"has atoms moved by up to {shift:.3g} Å"
    raise InputError(f"{where}: the input structure of this id {moved} since it was labelled (re-sampled input?); "
                     "expected the same structures to resume; label into a new file or drop the old labels")


def parse_shard(text) -> tuple[int, int] | None:
    """``label.shard``: null, or "i/n" with 0 <= i < n (e.g. ${oc.env:SLURM_ARRAY_TASK_ID}/8)."""
    if text is None or str(text).strip() in ("", "null", "None"):
        return None
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        index = count = -1
    if not 0 <= index < count:
        raise InputError(f"label.shard={text}: expected 'i/n' with 0 <= i < n, e.g. 0/2 and 1/2 for two processes")
    return index, count


def _extras(index: int, subsets: Mapping[str, int]) -> frozenset[str]:
    return frozenset(name for name, stride in subsets.items() if index % stride == 0)


def _requested_settings(labeller: Labeller, subsets: Mapping[str, int]) -> dict[str, dict]:
    settings = labeller.settings()
    wanted = {labeller.fidelity, *subsets}
    out = {name: value for name, value in settings.items() if name in wanted}
    out["REF"] = {**settings[labeller.fidelity], "fidelity": labeller.fidelity}
    return out
