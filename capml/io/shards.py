"""Shard files of a label run: ``label.shard=i/n`` labels input structures i, i+n, ... into a file of its own
under a lock, so n processes share one set; their merge into the dataset file, in input order.

``python -m capml.io.dataset DATASET --merge-shards --structures INPUT`` merges by hand (an unsharded label run
merges first thing).
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from capml.errors import InputError
from capml.io.atomic import write_text
from capml.io.contract import read_settings, settings_path, write_dataset
from capml.io.extxyz import failures_path, in_input_order, read_complete_frames, read_failures


def shard_path(path: str | Path, index: int, count: int) -> Path:
    """The file that shard ``index`` of ``count`` of a label run into ``path`` writes (``dataset.extxyz`` ->
    ``dataset.shard0of2.extxyz``)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.shard{index}of{count}{path.suffix}")


def shard_lock(shard: str | Path, blocking: bool = True):
    """An exclusive lock on a shard file for as long as the returned handle is open: a label run holds it,
    ``merge_shards`` refuses a shard that another process holds. None when ``blocking`` is False and it is held."""
    import fcntl

    handle = open(Path(shard).with_name(Path(shard).name + ".lock"), "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        handle.close()
        return None
    except OSError as err:  # e.g. a cluster file system mounted without flock
        handle.close()
        raise InputError(f"{shard}: cannot lock ({err}); label.shard needs a file system with flock") from err
    return handle


@contextmanager
def run_lock(shard: str | Path, blocking: bool = True, busy: str | None = None) -> Iterator[object]:
    """:func:`shard_lock` for the block of a run: ``busy`` is the InputError when ``blocking`` is False and another
    process holds the lock; a run refused for bad input inside the block removes the lock file again when it made
    it (under the lock, so no other run can have started on it), and leaves nothing behind."""
    lock_file = Path(shard).with_name(Path(shard).name + ".lock")
    fresh = not lock_file.exists()
    handle = shard_lock(shard, blocking)
    if handle is None:
        raise InputError(busy or f"{shard}: another process holds {lock_file.name}")
    try:
        yield handle
    except InputError:
        if fresh:
            lock_file.unlink(missing_ok=True)
        raise
    finally:
        handle.close()


def shard_files(path: str | Path) -> list[Path]:
    """The shard files of a label run into ``path``, including shards that wrote only settings or failures (every
    structure they tried failed)."""
    path = Path(path)
    pattern = re.compile(re.escape(path.stem) + r"\.shard\d+of\d+" + re.escape(path.suffix))
    names = {match.group(0) for f in path.parent.glob(f"{path.stem}.shard*of*{path.suffix}*")
             if (match := pattern.match(f.name)) and f.name[match.end():] in ("", ".settings.json", ".failures.jsonl")}
    return sorted(path.parent / name for name in names)


def merge_shards(path: str | Path, order: Sequence[str] | None = None) -> tuple[int, int]:
    """Merge the shard files of a label run into ``path``: settings checked per fidelity, each structure once (a
    shard's frame replaces the merged file's, as a relabelled one does), in input order (``order``: the input's
    structure_ids; ids not in it last) and failures carried over. Every shard's lock is taken before anything is
    read (a shard still labelling is refused), the merged file and its failures are written atomically before the
    shard files are removed, so a kill loses nothing; the lock files stay (a waiting shard keeps a valid lock).
    Returns (frames merged from shards, frames in all)."""
    path = Path(path)
    shards = shard_files(path)
    if not shards:
        return 0, len(read_complete_frames(path))
    locks = []
    try:
        for shard in shards:
            lock = shard_lock(shard, blocking=False)
            if lock is None:
                raise InputError(f"{shard}: still being labelled by another process; merge when every shard has "
                                 "ended")
            locks.append(lock)
        settings = read_settings(path)
        frames = {str(a.info.get("structure_id")): a for a in read_complete_frames(path)}
        merged = 0
        failures = dict(read_failures(path))
        for shard in shards:
            settings = settings.merged_with(read_settings(shard), where=str(shard))
            for atoms in read_complete_frames(shard):
                frames[str(atoms.info.get("structure_id"))] = atoms  # a new id goes last, a known one keeps its place
                merged += 1
            for sid, record in read_failures(shard).items():
                failures.setdefault(sid, record)
        keys = in_input_order(frames, order)
        if failures:
            target = failures_path(path)
            write_text(target, "".join(json.dumps(record) + "\n" for record in failures.values()))
        write_dataset(path, [frames[sid] for sid in keys], settings)
        for shard in shards:
            for extra in (settings_path(shard), failures_path(shard), shard):
                extra.unlink(missing_ok=True)
    finally:
        for lock in locks:
            lock.close()
    return merged, len(keys)
