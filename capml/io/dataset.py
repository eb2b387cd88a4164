"""Maintenance of a dataset file from the command line:

    python -m capml.io.dataset FILE --drop-fidelity NAME [--structure ID ...]
    python -m capml.io.dataset FILE --prefix-ids P --out OUT
    python -m capml.io.dataset FILE --merge-shards --structures INPUT
    python -m capml.io.dataset OUT --concat A B ...

The contract these files follow is :mod:`capml.io.contract`, structure files :mod:`capml.io.extxyz`, the shard
files of parallel label runs :mod:`capml.io.shards`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from capml.errors import InputError
from capml.io.contract import GAP_PREFIX, merge_datasets, read_settings, write_dataset
from capml.io.extxyz import read_complete_frames, read_structures
from capml.io.shards import merge_shards, shard_files



def drop_fidelity(path: str | Path, fidelity: str, structure_ids: Sequence[str] | None = None) -> int:
    """Remove ``gap_<fidelity>`` from the frames of ``path`` (every frame, or those of ``structure_ids``) for
    labels found wrong; returns how many frames lost it. Dropped from every frame, the fidelity also leaves the
    settings. A resumed label run then computes the fidelity afresh on those structures."""
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


def concat(out: str | Path, inputs: Sequence[str | Path], only: Sequence[str] | None = None,
           exclude: Sequence[str] = ()) -> int:
    """Write the frames of ``inputs`` one after the other to ``out`` (:func:`capml.io.contract.merge_datasets`:
    label settings must agree per fidelity, structure_ids must not repeat); returns the frame count. ``out`` must
    not be one of the inputs, and no input may have shard files waiting to be merged. ``only`` keeps the frames
    with these structure_ids, ``exclude`` drops those (a held-out set and its training set from the same files)."""
    if not inputs:
        raise InputError("--concat: expected at least one input dataset")
    only_ids, dropped_ids = (None if only is None else set(map(str, only))), set(map(str, exclude))
    for path in inputs:
        if Path(path).resolve() == Path(out).resolve():
            raise InputError(f"{out}: the output must not be one of the --concat inputs")
        if shard_files(path):
            raise InputError(f"{path}: shard files of a label run are waiting to be merged; merge them first")
    if only_ids is not None:  # checked before anything is written
        present = {str(a.info.get("structure_id")) for path in inputs for a in read_structures(path)}
        if only_ids - present:
            raise InputError(f"--structure {sorted(only_ids - present)[0]}: in none of the --concat inputs "
                             f"{[str(p) for p in inputs]}")

    def keep(atoms) -> bool:
        sid = str(atoms.info.get("structure_id"))
        return (only_ids is None or sid in only_ids) and sid not in dropped_ids

    return len(merge_datasets(inputs, out, keep))


def main(argv: list[str] | None = None) -> None:
    """``python -m capml.io.dataset FILE --drop-fidelity NAME [--structure ID ...]``: drop labels of one fidelity
    found wrong (on every frame, or on the named structures). ``python -m capml.io.dataset FILE --prefix-ids P
    --out OUT``: a copy with P before every structure_id. ``python -m capml.io.dataset FILE --merge-shards
    --structures INPUT``: the shard files of a label run merged into FILE in INPUT's order. ``python -m
    capml.io.dataset OUT --concat A B [--structure ID ...] [--exclude ID ...]``: A's frames, then B's, into OUT (only
    the named structures, or all but the excluded ones)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("dataset")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--drop-fidelity", metavar="NAME", help="e.g. hse06 drops gap_hse06")
    action.add_argument("--prefix-ids", metavar="P", help="write a copy (--out) with P before every structure_id")
    action.add_argument("--concat", nargs="+", metavar="INPUT",
                        help="write DATASET as the frames of the INPUT datasets in turn (label settings must agree)")
    action.add_argument("--merge-shards", action="store_true",
                        help="merge the shard files of a label.shard run into DATASET (input order from --structures)")
    parser.add_argument("--structures", help="with --merge-shards (required there): the label run's input, for the "
                        "frame order")
    parser.add_argument("--structure", action="append", metavar="ID", help="only this structure_id (repeatable)")
    parser.add_argument("--exclude", action="append", metavar="ID", help="with --concat: leave out this structure_id "
                        "(repeatable)")
    parser.add_argument("--out", help="the copy written by --prefix-ids")
    args = parser.parse_args(argv)
    if args.merge_shards:
        if not args.structures:
            parser.error("--merge-shards needs --structures (the label run's input: the merged file keeps its order)")
        order = [str(a.info.get("structure_id")) for a in read_structures(args.structures)]
        merged, total = merge_shards(args.dataset, order)
        print(f"{args.dataset}: {merged} frames merged from shard files, {total} frames in all")
        return
    if args.concat:
        n = concat(args.dataset, args.concat, args.structure, args.exclude or ())
        print(f"{args.dataset}: {n} frames from {len(args.concat)} datasets")
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
