"""Read, write, validate and merge datasets that follow the capml contract (see README.md, "Dataset files");
the shard files of parallel label runs are in :mod:`capml.io.shards`.

A dataset is one extxyz file plus a JSON sidecar ``<file>.settings.json`` holding the label settings per
fidelity (code, functional, cutoff, k-points, smearing). Two datasets whose settings for the same fidelity
differ are never merged silently.

Frame keys (units):
    info["REF_energy"]        eV, total energy of the MLIP fidelity
    arrays["REF_forces"]      eV/Å
    info["REF_stress"]        eV/Å^3, 3x3, ASE sign convention
    info["gap_<fidelity>"]    eV, e.g. gap_pbesol, gap_hse06, gap_gfn2
    info["structure_id"]      unique id of the frame (resume key)
    info["config_id"]         id of the parent configuration (split groups)
    info["x"], info["temperature"], info["sampling"], info["source"]
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import ase.io
import numpy as np
from ase import Atoms

from capml.errors import InputError
from capml.io.atomic import atomic_path, write_text

ENERGY_KEY = "REF_energy"
FORCES_KEY = "REF_forces"
STRESS_KEY = "REF_stress"
GAP_PREFIX = "gap_"
METADATA_KEYS = ("structure_id", "config_id", "x", "temperature", "sampling", "source")
LABEL_KEYS = (ENERGY_KEY, FORCES_KEY, STRESS_KEY)


def settings_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".settings.json")


@dataclass
class DatasetSettings:
    """Label settings per fidelity, e.g. {"pbesol": {"code": "gpaw", "ecut_eV": 350, ...}}."""

    fidelities: dict[str, dict] = field(default_factory=dict)

    def merged_with(self, other: "DatasetSettings", where: str = "") -> "DatasetSettings":
        out = dict(self.fidelities)
        for name, settings in other.fidelities.items():
            if name in out and _canonical(out[name]) != _canonical(settings):
                raise InputError(
                    f"{where}: label settings for fidelity '{name}' differ "
                    f"({json.dumps(out[name], sort_keys=True)} vs {json.dumps(settings, sort_keys=True)}); "
                    "refusing to mix datasets labelled with different settings"
                )
            out[name] = settings
        return DatasetSettings(out)


def _canonical(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


def read_settings(path: str | Path) -> DatasetSettings:
    sidecar = settings_path(path)
    if not sidecar.exists():
        return DatasetSettings()
    try:
        return DatasetSettings(json.loads(sidecar.read_text())["fidelities"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise InputError(f"{sidecar}: not a capml settings file (expected JSON with 'fidelities'): {err}") from err


def write_settings(path: str | Path, settings: DatasetSettings) -> None:
    sidecar = settings_path(path)
    write_text(sidecar, json.dumps({"fidelities": settings.fidelities}, indent=2, sort_keys=True, default=str))


def gap_keys(frames: Iterable[Atoms]) -> list[str]:
    keys = set()
    for atoms in frames:
        keys.update(k for k in atoms.info if k.startswith(GAP_PREFIX))
    return sorted(keys)


def read_structures(path: str | Path, index: str = ":") -> list[Atoms]:
    """Read any ASE-readable structure file; missing or corrupt files raise InputError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: structure file not found")
    try:
        frames = ase.io.read(path, index=index)
    except Exception as err:  # ASE raises many types for corrupt files
        raise InputError(f"{path}: cannot read structures ({type(err).__name__}: {err})") from err
    frames = frames if isinstance(frames, list) else [frames]
    if not frames:
        raise InputError(f"{path}: contains no structures")
    return frames


def read_dataset(
    path: str | Path,
    require: Sequence[str] = LABEL_KEYS,
    gaps: Sequence[str] = (),
) -> list[Atoms]:
    """Read and validate a dataset file. ``require`` lists REF_ keys, ``gaps`` fidelities (e.g. "pbesol")."""
    frames = read_structures(path)
    validate_frames(frames, require=require, gaps=gaps, where=str(path))
    return frames


def validate_frames(
    frames: Sequence[Atoms],
    require: Sequence[str] = LABEL_KEYS,
    gaps: Sequence[str] = (),
    where: str = "<frames>",
) -> None:
    """Check keys, shapes and finiteness, every gap finite and >= 0, structure_ids unique, periodic cells of
    positive volume and no two atoms closer than ``MIN_DISTANCE_A``; the first problem raises InputError naming
    file, frame and key."""
    seen_ids: dict[str, int] = {}
    for i, atoms in enumerate(frames):
        here = f"{where}: frame {i}"
        n = len(atoms)
        check_structure(atoms, here)
        sid = atoms.info.get("structure_id")
        if sid is not None:
            if str(sid) in seen_ids:
                raise InputError(f"{here}: structure_id {sid!r} repeats frame {seen_ids[str(sid)]}; expected one "
                                 "frame per structure_id")
            seen_ids[str(sid)] = i
        for key in atoms.info:
            if key.startswith(GAP_PREFIX) and key[len(GAP_PREFIX):] not in gaps:
                gap = _as_float(atoms.info[key])
                if gap is None or not np.isfinite(gap) or gap < 0:
                    raise InputError(f"{here}: '{key}' = {atoms.info[key]!r}, expected a finite gap >= 0 eV")
        for key in require:
            if key == FORCES_KEY:
                if key not in atoms.arrays:
                    raise InputError(f"{here}: missing per-atom array '{key}' (eV/Å, shape ({n}, 3))")
                value = atoms.arrays[key]
                if value.shape != (n, 3):
                    raise InputError(f"{here}: '{key}' has shape {value.shape}, expected ({n}, 3)")
            elif key == STRESS_KEY:
                if key not in atoms.info:
                    raise InputError(f"{here}: missing info key '{key}' (eV/Å^3, 3x3)")
                value = np.asarray(atoms.info[key], dtype=float)
                if value.shape not in ((3, 3), (6,), (9,)):
                    raise InputError(f"{here}: '{key}' has shape {value.shape}, expected 3x3")
            else:
                if key not in atoms.info:
                    raise InputError(f"{here}: missing info key '{key}'")
                value = atoms.info[key]
            if not np.all(np.isfinite(np.asarray(value, dtype=float))):
                raise InputError(f"{here}: '{key}' contains NaN or inf")
        for fidelity in gaps:
            key = GAP_PREFIX + fidelity
            if key not in atoms.info:
                raise InputError(f"{here}: missing info key '{key}' (band gap in eV)")
            gap = float(atoms.info[key])
            if not np.isfinite(gap) or gap < 0:
                raise InputError(f"{here}: '{key}' = {gap}, expected a finite gap >= 0 eV")


MIN_DISTANCE_A = 0.5


def _as_float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def check_structure(atoms: Atoms, here: str) -> None:
    """A crystal the models can take: periodic in 3D, a cell of positive volume, no two atoms closer than
    ``MIN_DISTANCE_A`` (the same atom written twice)."""
    from ase.neighborlist import neighbor_list

    if not np.all(atoms.pbc):
        raise InputError(f"{here}: pbc={atoms.pbc.tolist()}, expected a periodic crystal (pbc True in 3D)")
    volume = abs(np.linalg.det(atoms.cell.array))
    if not np.isfinite(volume) or volume < 1e-6:
        raise InputError(f"{here}: cell volume {volume:.3g} Å^3, expected a 3D cell (Lattice with positive volume)")
    if not np.all(np.isfinite(atoms.positions)):
        raise InputError(f"{here}: positions contain NaN or inf")
    if len(atoms) > 1:
        i, j, d = neighbor_list("ijd", atoms, MIN_DISTANCE_A)
        if len(d):
            k = int(np.argmin(d))
            raise InputError(f"{here}: atoms {i[k]} and {j[k]} are {d[k]:.3f} Å apart, expected at least "
                             f"{MIN_DISTANCE_A} Å (an atom written twice?)")


def frame_text(atoms: Atoms) -> str:
    buffer = io.StringIO()
    ase.io.write(buffer, atoms, format="extxyz")
    return buffer.getvalue()


def append_frame(path: str | Path, atoms: Atoms) -> None:
    """Append one frame in a single write and fsync it, so a kill never leaves half a finished frame."""
    text = frame_text(atoms)
    with open(path, "a") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def write_dataset(path: str | Path, frames: Sequence[Atoms], settings: DatasetSettings | None = None) -> None:
    """Write frames atomically (temp file + rename); nothing partial is left if writing fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        for atoms in frames:
            handle.write(frame_text(atoms))
    if settings is not None:
        write_settings(path, settings)


def drop_fidelity(path: str | Path, fidelity: str, structure_ids: Sequence[str] | None = None) -> int:
    """Remove ``gap_<fidelity>`` from the frames of ``path`` (every frame, or those of ``structure_ids``) for
    labels found wrong; returns how many frames lost it. Dropped from every frame, the fidelity also leaves the
    settings. A resumed label run then computes the fidelity afresh on those structures."""
    from capml.io.shards import shard_files  # shards build on this module

    if shard_files(path):
        raise InputError(f"{path}: shard files of a label run are waiting to be merged; merge them first "
                         "(an unsharded label run, or --merge-shards)")
    frames = read_complete_frames(path)
    key = GAP_PREFIX + fidelity
    settings = read_settings(path)
    if structure_ids is None:
        dropped = sum(atoms.info.pop(key, None) is not None for atoms in frames)
        settings.fidelities.pop(fidelity, None)
    else:
        wanted = {str(s) for s in structure_ids}
        present = {str(a.info.get("structure_id")) for a in frames}
        if wanted - present:
            raise InputError(f"{path}: no frame with structure_id {sorted(wanted - present)}")
        dropped = sum(atoms.info.pop(key, None) is not None for atoms in frames
                      if str(atoms.info.get("structure_id")) in wanted)
    write_dataset(path, frames, settings)
    return dropped


def prefix_ids(path: str | Path, prefix: str, out: str | Path) -> int:
    """Write ``path`` to ``out`` (with its settings) with ``prefix`` before every structure_id, so that the files
    of two runs that named their structures alike (e.g. md_check snapshots of two MD runs) can be used together;
    returns the number of frames. ``out`` must be another file."""
    if Path(out).resolve() == Path(path).resolve():
        raise InputError(f"{out}: --out must differ from the dataset file {path}")
    if not prefix:
        raise InputError("--prefix-ids: expected a non-empty prefix")
    frames = read_complete_frames(path)
    for k, atoms in enumerate(frames):
        atoms.info["structure_id"] = prefix + str(atoms.info.get("structure_id", k))
    write_dataset(out, frames, read_settings(path))
    return len(frames)


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
        write_dataset(path, [frames[last[sid]] for sid in keys])


def in_input_order(ids: Iterable[str], order: Sequence[str] | None) -> list[str]:
    """``ids`` (each once, in file order) sorted into ``order``, the structure_ids of the label stage's input; ids
    not in ``order`` go last, in file order."""
    rank = {sid: i for i, sid in enumerate(order or [])}
    return sorted(ids, key=lambda sid: rank.get(sid, len(rank)))


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
            if offset + natoms + 2 > len(lines):
                raise ValueError("truncated frame")
            frames.append(ase.io.read(io.StringIO(chunk), format="extxyz"))
        except Exception:
            break
        offset += natoms + 2
    if offset < len(lines) and repair:
        with open(path, "r+") as handle:
            handle.truncate(len("".join(lines[:offset]).encode()))
    return frames


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


def refuse_mixed_settings(paths: Sequence[str | Path], keys: Sequence[str] | None, hint: str) -> None:
    """InputError naming the first file whose label settings disagree with the files before it, for the
    fidelities in ``keys`` ("REF" for REF_energy/forces/stress, a fidelity name for its gap; None: all): extra
    training files against the dataset (mlip.extra_train, data.extra_train). A file without a settings sidecar
    is refused beside one that has it: nothing would say which labeller made its labels."""
    merged, first = DatasetSettings(), None
    for path in paths:
        settings = read_settings(path)
        chosen = DatasetSettings({k: v for k, v in settings.fidelities.items() if keys is None or k in keys})
        if first is not None and bool(merged.fidelities) != bool(settings.fidelities):
            missing, other = (path, first) if not settings.fidelities else (first, path)
            raise InputError(f"{missing}: no label settings ({settings_path(missing).name}) beside {other}, which "
                             f"has them; cannot tell which labeller made its labels; {hint}")
        merged = merged.merged_with(chosen, where=f"{path} (against {first})")
        first = first or path


def refuse_repeated_ids(ids_by_file: Sequence[tuple[str, Iterable]], hint: str) -> None:
    """InputError naming the first file (in order; a file may be listed twice) with a structure_id that an
    earlier one already has, e.g. extra training files against the dataset and each other; ``hint`` says what
    was expected."""
    seen: dict[str, str] = {}
    for where, ids in ids_by_file:
        ids = {str(i) for i in ids}
        clash = sorted(ids & seen.keys())
        if clash:
            raise InputError(f"{where}: structure_id {clash[0]!r} is already in {seen[clash[0]]}; {hint}")
        seen.update(dict.fromkeys(ids, where))


def merge_datasets(paths: Sequence[str | Path], out: str | Path) -> list[Atoms]:
    """Concatenate datasets after checking their label settings agree per fidelity."""
    settings = DatasetSettings()
    frames: list[Atoms] = []
    for path in paths:
        settings = settings.merged_with(read_settings(path), where=str(path))
        frames.extend(read_dataset(path, require=()))
    counts = Counter(a.info.get("structure_id") for a in frames)
    duplicated = {i for i, c in counts.items() if i is not None and c > 1}
    if duplicated:
        raise InputError(f"{out}: structure_id values repeat across inputs: {sorted(duplicated)[:5]}")
    write_dataset(out, frames, settings)
    return frames


def main(argv: list[str] | None = None) -> None:
    """``python -m capml.io.dataset FILE --drop-fidelity NAME [--structure ID ...]``: drop labels of one fidelity
    found wrong (on every frame, or on the named structures). ``python -m capml.io.dataset FILE --prefix-ids P
    --out OUT``: a copy with P before every structure_id. ``python -m capml.io.dataset FILE --merge-shards
    --structures INPUT``: the shard files of a label run merged into FILE in INPUT's order."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("dataset")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--drop-fidelity", metavar="NAME", help="e.g. hse06 drops gap_hse06")
    action.add_argument("--prefix-ids", metavar="P", help="write a copy (--out) with P before every structure_id")
    action.add_argument("--merge-shards", action="store_true",
                        help="merge the shard files of a label.shard run into DATASET (input order from --structures)")
    parser.add_argument("--structures", help="with --merge-shards (required there): the label run's input, for the "
                        "frame order")
    parser.add_argument("--structure", action="append", metavar="ID", help="only this structure_id (repeatable)")
    parser.add_argument("--out", help="the copy written by --prefix-ids")
    args = parser.parse_args(argv)
    if args.merge_shards:
        if not args.structures:
            parser.error("--merge-shards needs --structures (the label run's input: the merged file keeps its order)")
        from capml.io.shards import merge_shards

        order = [str(a.info.get("structure_id")) for a in read_structures(args.structures)]
        merged, total = merge_shards(args.dataset, order)
        print(f"{args.dataset}: {merged} frames merged from shard files, {total} frames in all")
        return
    if args.prefix_ids is not None:
        if not args.out:
            parser.error("--prefix-ids needs --out")
        n = prefix_ids(args.dataset, args.prefix_ids, args.out)
        print(f"{args.out}: {n} frames of {args.dataset}, structure_ids prefixed with {args.prefix_ids!r}")
        return
    dropped = drop_fidelity(args.dataset, args.drop_fidelity, args.structure)
    print(f"{args.dataset}: gap_{args.drop_fidelity} dropped from {dropped} "
          "frames; a resumed label run recomputes it on its subset")


if __name__ == "__main__":
    main()
