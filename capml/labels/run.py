"""Resumable labelling of a structure set into a dataset file.

Each labelled structure is appended (one write, fsync) as soon as it is done; a rerun skips every
structure already in the output or recorded as failed. Failures go to ``<out>.failures.jsonl`` with
their error and do not stop the batch.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from ase import Atoms
from tqdm.auto import tqdm

from capml.errors import InputError
from capml.io.dataset import (
    GAP_PREFIX,
    DatasetSettings,
    append_frame,
    failures_path,
    keep_last_per_structure,
    read_complete_frames,
    read_failures,
    read_settings,
    validate_frames,
    write_settings,
)
from capml.labels.base import Labeller

log = logging.getLogger(__name__)


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
) -> LabelSummary:
    """Label ``structures`` into ``out``.

    ``subsets`` maps an optional fidelity of the labeller to a stride: structure i (in input order)
    gets that fidelity when ``i % stride == 0``, so the subset is fixed by the input, not by timing.
    ``limit`` stops after that many new labels (for a time-boxed run).
    """
    subsets = dict(subsets or {})
    for name in subsets:
        if name not in labeller.optional:
            raise InputError(f"labels.subsets: '{name}' is not an optional fidelity of this labeller "
                             f"(expected one of {list(labeller.optional)})")
    ids = structure_ids(structures, where)
    out = Path(out)
    settings = read_settings(out).merged_with(DatasetSettings(_requested_settings(labeller, subsets)), where=str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_settings(out, settings)

    # a kill between appending a relabelled frame and dropping the old one; frames in input order
    keep_last_per_structure(out, ids)
    labelled_keys = {str(a.info.get("structure_id")): set(a.info) for a in read_complete_frames(out)}
    failed = {} if retry_failed else read_failures(out)
    # finished: labelled, with every optional fidelity its subset asks for (one dropped as wrong is redone)
    todo = [i for i, sid in enumerate(ids) if sid not in failed and not (
        sid in labelled_keys and {GAP_PREFIX + name for name in _extras(i, subsets)} <= labelled_keys[sid])]
    skipped = len(ids) - len(todo)
    if limit is not None:
        todo = todo[:limit]
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
            with open(failures_path(out), "a") as handle:
                handle.write(json.dumps({"structure_id": ids[i], "error": f"{type(err).__name__}: {err}",
                                         "traceback": traceback.format_exc(limit=3)}) + "\n")
            continue
        append_frame(out, frame)
        if ids[i] in labelled_keys:
            keep_last_per_structure(out)
        labelled += 1
    return LabelSummary(labelled, skipped, n_failed, time.perf_counter() - start)


def _extras(index: int, subsets: Mapping[str, int]) -> frozenset[str]:
    return frozenset(name for name, stride in subsets.items() if index % stride == 0)


def _requested_settings(labeller: Labeller, subsets: Mapping[str, int]) -> dict[str, dict]:
    settings = labeller.settings()
    wanted = {labeller.fidelity, *subsets}
    out = {name: value for name, value in settings.items() if name in wanted}
    out["REF"] = {**settings[labeller.fidelity], "fidelity": labeller.fidelity}
    return out
