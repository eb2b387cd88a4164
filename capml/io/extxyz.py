"""Structure files, whatever their labels: read any ASE format with errors that name the file, write extxyz whole
(temporary file + rename), and files that runs append to (frames of a label run or an MD trajectory, failure
records) where a kill tears at most the last entry, which the next reader cuts off.

What the frames of a dataset must hold is :mod:`capml.io.contract`.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import ase.io
from ase import Atoms

from capml.errors import InputError
from capml.io.atomic import atomic_path


def check_structure_file(path: str | Path) -> Path:
    """InputError naming ``path`` when it is missing or holds nothing (empty, or blank lines only)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: structure file not found")
    with open(path, "rb") as handle:
        if not handle.read(1 << 16).strip() and path.stat().st_size <= 1 << 16:
            raise InputError(f"{path}: contains no structures (an empty file)")
    return path


def _unreadable(path: Path, err: Exception) -> InputError:
    return InputError(f"{path}: cannot read structures ({type(err).__name__}: {err})")


def read_structures(path: str | Path, index: str = ":") -> list[Atoms]:
    """Read any ASE-readable structure file; missing or corrupt files raise InputError naming the file."""
    path = check_structure_file(path)
    try:
        frames = ase.io.read(path, index=index)
    except Exception as err:  # ASE raises many types for corrupt files
        raise _unreadable(path, err) from err
    frames = frames if isinstance(frames, list) else [frames]
    if not frames:
        raise InputError(f"{path}: contains no structures")
    return frames


def iter_structures(path: str | Path) -> Iterator[Atoms]:
    """The frames of any ASE-readable structure file one at a time (memory for one frame, not the file), with the
    errors of :func:`read_structures`: a file truncated or not text at all is an InputError naming it."""
    path = check_structure_file(path)
    frames = ase.io.iread(path, index=":")
    count = 0
    while True:
        try:
            atoms = next(frames)
        except StopIteration:
            break
        except Exception as err:  # ASE raises many types for corrupt files (XYZError, UnicodeDecodeError, ...)
            raise _unreadable(path, err) from err
        count += 1
        yield atoms
    if not count:
        raise InputError(f"{path}: contains no structures")


def frame_text(atoms: Atoms) -> str:
    buffer = io.StringIO()
    ase.io.write(buffer, atoms, format="extxyz")
    return buffer.getvalue()


def write_frames(path: str | Path, frames: Iterable[Atoms]) -> None:
    """Write frames atomically (temp file + rename); nothing partial is left if writing fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        for atoms in frames:
            handle.write(frame_text(atoms))


def append_frame(path: str | Path, atoms: Atoms) -> None:
    """Append one frame in a single write and fsync it, so a kill never leaves half a finished frame."""
    text = frame_text(atoms)
    with open(path, "a") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def read_complete_frames(path: str | Path, repair: bool = True) -> list[Atoms]:
    """Frames of a file being appended to; a torn last frame (killed mid-write) is cut off the file (with
    ``repair``; a process reading a file that another one owns only skips it)."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text().splitlines(keepends=True)
    frames, offset = [], 0
    while offset < len(lines):
        try:
            natoms = int(lines[offset].split()[0])
            chunk = "".join(lines[offset : offset + natoms + 2])
            if offset + natoms + 2 > len(lines) or not chunk.endswith("\n"):  # a last line without its end: torn
                raise ValueError("truncated frame")
            frames.append(ase.io.read(io.StringIO(chunk), format="extxyz"))
        except Exception:
            break
        offset += natoms + 2
    if offset < len(lines) and repair:
        with open(path, "r+") as handle:
            handle.truncate(len("".join(lines[:offset]).encode()))
    return frames


def keep_last_per_structure(path: str | Path, order: Sequence[str] | None = None) -> None:
    """Rewrite ``path`` (atomically) with only the last frame of each structure_id, in the place of its first
    frame: a relabelled structure is appended first, then moved into its old place here, so a kill in between
    loses nothing and the file keeps its order. ``order`` (the structure_ids of the label stage's input) sorts
    the frames into input order, so that "the first N frames" names the same structures however often some
    were relabelled; ids not in ``order`` go last, in file order."""
    frames = read_complete_frames(path)
    last = {str(atoms.info.get("structure_id")): k for k, atoms in enumerate(frames)}  # an id keeps its first place
    keys = in_input_order(last, order)
    if len(last) < len(frames) or keys != list(last):
        write_frames(path, [frames[last[sid]] for sid in keys])


def in_input_order(ids: Iterable[str], order: Sequence[str] | None) -> list[str]:
    """``ids`` (each once, in file order) sorted into ``order``, the structure_ids of the label stage's input; ids
    not in ``order`` go last, in file order."""
    rank = {sid: i for i, sid in enumerate(order or [])}
    return sorted(ids, key=lambda sid: rank.get(sid, len(rank)))


def failures_path(path: str | Path) -> Path:
    """Sidecar of a dataset being labelled: one JSON line per structure whose calculation failed."""
    path = Path(path)
    return path.with_name(path.name + ".failures.jsonl")


def read_failures(path: str | Path, repair: bool = False) -> dict[str, dict]:
    """Failure records of a dataset being labelled; a torn last line (a kill mid-write) is skipped, and with
    ``repair`` (the run that owns the file) cut off, so the next record starts on a line of its own."""
    sidecar = failures_path(path)
    if not sidecar.exists():
        return {}
    records = {}
    lines = sidecar.read_text().splitlines(keepends=True)
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            records[record["structure_id"]] = record
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            if k == len(lines) - 1 and not line.endswith("\n"):  # torn by a kill mid-write: that failure is retried
                if repair:
                    with open(sidecar, "r+") as handle:
                        handle.truncate(len("".join(lines[:k]).encode()))
                break
            raise InputError(f"{sidecar}: line {k + 1} is not a failure record (expected JSON with "
                             f"'structure_id'): {err}") from err
    return records
