"""``simulate.py stage=import_vasp import.root=DIR``: a folder of VASP runs becomes one capml dataset.

Every ``vasprun*.xml`` under the root is read (an OUTCAR only where no vasprun.xml is beside it), with the labels
and checks of ``capml.labels.vasp``:

- frames: the last ionic step of each run (``import.steps=last``) or every ``stride``-th one and the last
  (``all``); ``structure_id`` = ``<file relative to the root>@<ionic step>``, ``config_id`` = the file, so splits
  keep the steps of one run together;
- fidelity: named from each run's functional (``import.fidelity`` overrides it for every run). ``REF_*`` labels
  come from one fidelity (``import.energy_fidelity``; default the fidelity with the most frames); a run of
  another fidelity adds its ``gap_<fidelity>`` to the frame of the same structure and is skipped (with the
  reason) when there is none;
- settings: ENCUT, k-points, smearing, POTCARs and functional tags per fidelity in the settings sidecar; runs
  whose settings differ within one fidelity are refused, listing the files (``import.ignore_settings`` names
  keys allowed to vary, recorded as such);
- skipped, with the reason: unreadable and truncated files (``import.keep_partial`` imports the complete ionic
  steps of a truncated file), ionic steps whose SCF hit NELM, repeated structures; an unconverged relaxation
  is a warning.

The read of each file is cached in ``<out>.import_cache.jsonl`` (one line per file, appended as it is read), so
a killed import resumes where it stopped and gives the same dataset; the dataset, its settings and the summary
(``<out stem>.import.json``) are written atomically at the end, under a lock on the output.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import os
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms

from capml.errors import InputError
from capml.io.atomic import write_text
from capml.io.contract import DatasetSettings, validate_frames, write_dataset
from capml.io.extxyz import frame_text

log = logging.getLogger("capml.import")

CACHE_VERSION = 1
COMPARED_SETTINGS = ("code", "xc_tags", "encut_eV", "smearing", "kpoints", "ispin", "potcars")


@dataclass
class ImportOptions:
    root: Path
    out: Path
    patterns: tuple[str, ...] = ("**/vasprun*.xml", "**/OUTCAR*")
    steps: str = "last"  # last | all
    stride: int = 1
    fidelity: str | None = None
    energy_fidelity: str | None = None
    keep_partial: bool = False
    ignore_settings: tuple[str, ...] = ()

    def __post_init__(self):
        self.root, self.out = Path(self.root), Path(self.out)
        if self.steps not in ("last", "all"):
            raise InputError(f"import.steps={self.steps!r}: expected 'last' or 'all'")
        if not isinstance(self.stride, int) or isinstance(self.stride, bool) or self.stride < 1:
            raise InputError(f"import.stride={self.stride!r}: expected an integer >= 1")
        unknown = set(self.ignore_settings) - set(COMPARED_SETTINGS)
        if unknown:
            raise InputError(f"import.ignore_settings={sorted(unknown)}: expected names among {COMPARED_SETTINGS}")
        if not self.root.is_dir():
            raise InputError(f"import.root={self.root}: not a folder (expected the folder of VASP runs)")

    def read_key(self) -> str:
        """What decides the frames read from one file: a cache line made with other options is not reused."""
        return json.dumps([CACHE_VERSION, self.steps, self.stride, self.fidelity, self.keep_partial])


@dataclass
class ImportSummary:
    root: str
    out: str
    files_found: int = 0
    files_imported: int = 0
    frames: int = 0
    frames_by_fidelity: dict = field(default_factory=dict)
    gaps_by_fidelity: dict = field(default_factory=dict)
    energy_fidelity: str | None = None
    skipped_files: list = field(default_factory=list)
    skipped_frames: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    files: list = field(default_factory=list)


def find_runs(root: Path, patterns) -> list[Path]:
    """VASP outputs under ``root``: every vasprun.xml, and an OUTCAR only where no vasprun.xml is beside it."""
    found = sorted({p for pattern in patterns for p in root.glob(pattern) if p.is_file()})
    xml_dirs = {p.parent for p in found if "vasprun" in p.name}
    return [p for p in found if "vasprun" in p.name or p.parent not in xml_dirs]


def _read_file(path: Path, rel: str, options: ImportOptions) -> dict:
    """One cache record: what the file gave (frames as extxyz text) or why it gave nothing."""
    from capml.labels.vasp import read_vasp_run

    record = {"file": rel, "status": "skipped", "reason": None, "warnings": [], "frames": "", "n_frames": 0}
    try:
        run = read_vasp_run(path, options.fidelity)
    except InputError as err:
        record["reason"] = str(err).replace(str(path), rel, 1)
        return record
    record.update(fidelity=run.fidelity, settings=run.settings, n_steps=run.n_steps, warnings=list(run.warnings),
                  skipped_steps=[[k, why] for k, why in run.skipped_steps], truncated=run.truncated,
                  gap_error=run.gap_error)
    if run.truncated and not options.keep_partial:
        record["reason"] = (f"truncated file (incomplete, e.g. a killed job) after {len(run.frames)} complete "
                            "ionic steps; import.keep_partial=true imports those steps")
        return record
    if run.truncated:
        record["warnings"].append(f"truncated file: imported its {len(run.frames)} complete ionic steps")
    frames = run.frames
    if not frames:
        why = "; ".join(f"step {k}: {r}" for k, r in run.skipped_steps[:3]) or "no complete ionic step"
        record["reason"] = f"no usable ionic step ({why})"
        return record
    last = run.n_steps - 1
    if options.steps == "last":
        if frames[-1].info["ionic_step"] != last and not run.truncated:
            why = dict(run.skipped_steps).get(last, "not usable")
            record["reason"] = f"last ionic step {last} skipped ({why})"
            return record
        frames = frames[-1:]
    else:
        frames = [a for a in frames if a.info["ionic_step"] % options.stride == 0 or a is frames[-1]]
    if run.gap is not None and frames[-1].info["ionic_step"] == last:
        frames[-1].info[f"gap_{run.fidelity}"] = run.gap.gap_eV
        frames[-1].info[f"direct_{run.fidelity}"] = run.gap.direct
    elif run.gap_error and not run.truncated:
        record["warnings"].append(f"no gap ({run.gap_error})")
    for atoms in frames:
        step = atoms.info.pop("ionic_step")
        atoms.info.update(structure_id=f"{rel}@{step}", config_id=rel, sampling="vasp", source=rel,
                          ionic_step=step, fidelity=run.fidelity)
    record.update(status="read", frames="".join(frame_text(a) for a in frames), n_frames=len(frames))
    return record


def fingerprint(atoms: Atoms) -> str:
    """Same species, cell (to 1e-4 Å) and wrapped fractional positions (to 1e-5) give the same fingerprint."""
    scaled = np.round(atoms.cell.scaled_positions(atoms.positions) % 1.0, 5) % 1.0
    digest = hashlib.sha1()
    for array in (np.asarray(atoms.numbers, np.int64), np.round(atoms.cell.array, 4) + 0.0, scaled + 0.0):
        digest.update(array.tobytes())
    return digest.hexdigest()


def _compared(settings: dict, ignore) -> dict:
    out = {k: settings.get(k) for k in COMPARED_SETTINGS if k not in ignore and k != "potcars"}
    return out


def _potcar_elements(potcars) -> dict:
    return {title.split()[1].split("_")[0] if len(title.split()) > 1 else title: title for title in potcars}


def fidelity_settings(records: list[dict], ignore) -> dict[str, dict]:
    """Settings per fidelity from the files' records; InputError listing the files when they differ."""
    out = {}
    by_fidelity = defaultdict(list)
    for rec in records:
        by_fidelity[rec["fidelity"]].append(rec)
    for fidelity, recs in sorted(by_fidelity.items()):
        groups = defaultdict(list)
        for rec in recs:
            groups[json.dumps(_compared(rec["settings"], ignore), sort_keys=True)].append(rec["file"])
        potcars: dict = {}
        clash = []
        for rec in recs if "potcars" not in ignore else []:
            for element, title in _potcar_elements(rec["settings"].get("potcars") or []).items():
                if potcars.setdefault(element, (title, rec["file"]))[0] != title:
                    clash.append(f"{element}: {potcars[element][0]!r} in {potcars[element][1]}, {title!r} in "
                                 f"{rec['file']}")
        if len(groups) > 1 or clash:
            values = [json.loads(key) for key in groups]
            differ = sorted(k for k in values[0] if any(v.get(k) != values[0].get(k) for v in values))
            described = []
            for value, files in list(zip(values, groups.values()))[:4]:
                shown = {k: value.get(k) for k in differ}
                described.append(f"{files[:3] + (['...'] if len(files) > 3 else [])} have {shown}")
            detail = (f"they differ in {differ}: " + "; ".join(described) if len(groups) > 1
                      else "POTCARs differ: " + "; ".join(clash[:3]))
            raise InputError(f"fidelity '{fidelity}': runs with different settings cannot share one fidelity "
                             f"({detail}); set import.fidelity or import.ignore_settings, or import them "
                             "separately")
        settings = dict(_compared(recs[0]["settings"], ignore))
        settings["potcars"] = {e: t for e, (t, _) in sorted(potcars.items())}
        for key in ignore:
            settings[key] = {"varies": sorted({json.dumps(r["settings"].get(key), sort_keys=True) for r in recs})}
        settings["versions"] = sorted({str(r["settings"].get("version")) for r in recs})
        out[fidelity] = settings
    return out


class _Cache:
    """The per-file records of an import, one JSON line each, appended and fsynced as files are read."""

    def __init__(self, path: Path, read_key: str):
        self.path, self.read_key, self.records = path, read_key, {}
        if path.exists():
            text = path.read_text()
            good = 0
            for line in text.splitlines(keepends=True):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    break  # a torn last line (killed mid-write): cut off below
                good += len(line.encode())
                if record.get("read_key") == read_key:
                    self.records[(record["file"], record["size"], record["mtime_ns"])] = record
            if good < len(text.encode()):
                with open(path, "r+") as handle:
                    handle.truncate(good)

    def get(self, key):
        return self.records.get(key)

    def add(self, key, record):
        record = {**record, "file": key[0], "size": key[1], "mtime_ns": key[2], "read_key": self.read_key}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.records[key] = record
        return record


def import_vasp(options: ImportOptions, progress: bool = True) -> ImportSummary:
    out = options.out
    created = [p for p in [out.parent, *out.parent.parents] if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    lock_path = out.with_name(out.name + ".lock")
    cache_path = out.with_name(out.name + ".import_cache.jsonl")
    fresh = not lock_path.exists() and not cache_path.exists()
    lock = open(lock_path, "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise InputError(f"{out}: another import is writing this dataset; wait for it or choose import.out")
    try:
        return _import(options, progress)
    except InputError:  # refused: a new lock file and the folders made for it go again
        if fresh and not out.exists():  # a first import refused: no lock, no cache of its reading left behind
            lock_path.unlink(missing_ok=True)
            cache_path.unlink(missing_ok=True)
            for folder in created:
                if folder.exists() and not any(folder.iterdir()):
                    folder.rmdir()
        raise
    finally:
        lock.close()


def _import(options: ImportOptions, progress: bool) -> ImportSummary:
    from tqdm import tqdm

    files = find_runs(options.root, options.patterns)
    if not files:
        raise InputError(f"import.root={options.root}: no VASP output matching {list(options.patterns)}")
    cache_path = options.out.with_name(options.out.name + ".import_cache.jsonl")
    if options.out.exists() and not cache_path.exists():
        raise InputError(f"import.out={options.out}: exists and was not written by import_vasp; choose another "
                         "import.out")
    cache = _Cache(cache_path, options.read_key())
    records = []
    # on a terminal only: a refused import (settings that differ) then ends in its one error line
    for path in tqdm(files, desc="import_vasp", unit="file", disable=None if progress else True):
        rel = path.relative_to(options.root).as_posix()
        stat = path.stat()
        key = (rel, stat.st_size, stat.st_mtime_ns)
        records.append(cache.get(key) or cache.add(key, _read_file(path, rel, options)))
    summary = ImportSummary(root=str(options.root), out=str(options.out), files_found=len(files))
    read = [r for r in records if r["status"] == "read"]
    for rec in records:
        if rec["status"] != "read":
            summary.skipped_files.append({"file": rec["file"], "reason": rec["reason"]})
        for k, why in rec.get("skipped_steps") or []:
            summary.skipped_frames.append({"structure_id": f"{rec['file']}@{k}", "reason": why})
        summary.warnings.extend(f"{rec['file']}: {w}" for w in rec.get("warnings", []))
    if not read:
        reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in summary.skipped_files[:3])
        raise InputError(f"import.root={options.root}: no VASP run could be imported ({reasons})")
    settings = fidelity_settings(read, options.ignore_settings)
    frames_of = {r["file"]: ase.io.read(io.StringIO(r["frames"]), index=":", format="extxyz") for r in read}
    counts = Counter({f: 0 for f in settings})  # frames with REF_ labels: the ones that can make the dataset
    for rec in read:
        counts[rec["fidelity"]] += sum("REF_energy" in a.info for a in frames_of[rec["file"]])
    energy = options.energy_fidelity or max(sorted(counts), key=lambda f: counts[f])
    if energy not in settings:
        raise InputError(f"import.energy_fidelity={energy!r}: no run of that fidelity (found {sorted(settings)})")
    summary.energy_fidelity = energy
    frames, seen, imported = [], {}, set()
    for rec in read:  # the energy fidelity first: it makes the frames
        if rec["fidelity"] != energy:
            continue
        for atoms in frames_of[rec["file"]]:
            if "no_ref" in atoms.info:
                summary.skipped_frames.append({"structure_id": atoms.info["structure_id"],
                                               "reason": atoms.info["no_ref"]})
                continue
            print_ = fingerprint(atoms)
            if print_ in seen:
                summary.skipped_frames.append({"structure_id": atoms.info["structure_id"],
                                               "reason": f"duplicate of {seen[print_].info['structure_id']}"})
                continue
            atoms.info.pop("fidelity", None)
            atoms.info.pop("no_ref", None)
            seen[print_] = atoms
            frames.append(atoms)
            imported.add(rec["file"])
    for rec in read:  # then the other fidelities add their gap to the frame of the same structure
        if rec["fidelity"] == energy:
            continue
        fidelity = rec["fidelity"]
        for atoms in frames_of[rec["file"]]:
            sid = atoms.info["structure_id"]
            gap = atoms.info.get(f"gap_{fidelity}")
            target = seen.get(fingerprint(atoms))
            if gap is None:
                why = "no gap in this ionic step" if target is not None else ""
                summary.skipped_frames.append({"structure_id": sid, "reason": (
                    f"{fidelity} frame: REF_* labels come from import.energy_fidelity={energy}; "
                    + (why or f"no {energy} frame of the same structure"))})
                continue
            if target is None:
                summary.skipped_frames.append({"structure_id": sid, "reason": (
                    f"{fidelity} gap of a structure with no {energy} frame (REF_* labels come from "
                    f"import.energy_fidelity={energy}; import it alone with import.energy_fidelity={fidelity})")})
                continue
            if f"gap_{fidelity}" in target.info:
                summary.skipped_frames.append({"structure_id": sid, "reason": (
                    f"duplicate {fidelity} gap of {target.info['structure_id']}")})
                continue
            target.info[f"gap_{fidelity}"] = gap
            target.info[f"direct_{fidelity}"] = atoms.info.get(f"direct_{fidelity}")
            target.info[f"source_{fidelity}"] = rec["file"]
            imported.add(rec["file"])
    for rec in read:
        if rec["file"] not in imported:
            summary.skipped_files.append({"file": rec["file"], "reason": "every frame skipped (see skipped_frames)"})
    if not frames:
        reasons = "; ".join(f"{f['structure_id']}: {f['reason']}" for f in summary.skipped_frames[:2])
        raise InputError(f"import.root={options.root}: no frame with energy, forces and stress of "
                         f"import.energy_fidelity={energy} ({reasons})")
    require = ["REF_energy", "REF_forces"] + (["REF_stress"] if all("REF_stress" in a.info for a in frames) else [])
    validate_frames(frames, require=require, where=str(options.out))
    gap_names = sorted({k[4:] for a in frames for k in a.info if k.startswith("gap_")})
    used = {energy, *gap_names}
    dataset_settings = {f: s for f, s in settings.items() if f in used}
    dataset_settings["REF"] = {**settings[energy], "fidelity": energy}
    summary.files_imported = len(imported)
    summary.frames = len(frames)
    summary.frames_by_fidelity = {f: counts[f] for f in sorted(counts)}
    summary.gaps_by_fidelity = {f: sum(f"gap_{f}" in a.info for a in frames) for f in gap_names}
    summary.files = [{"file": r["file"], "fidelity": r.get("fidelity"), "steps": r.get("n_steps"),
                      "frames": r["n_frames"] if r["file"] in imported else 0,
                      "status": "imported" if r["file"] in imported else "skipped"} for r in records]
    write_dataset(options.out, frames, DatasetSettings(dataset_settings))
    summary_path = summary_file(options.out)
    write_text(summary_path, json.dumps(asdict(summary), indent=2, default=str))
    return summary


def summary_file(out: Path) -> Path:
    return Path(out).with_name(Path(out).stem + ".import.json")


def summary_table(summary: ImportSummary) -> str:
    import pandas as pd

    table = pd.DataFrame(summary.files)
    reasons = {s["file"]: s["reason"] for s in summary.skipped_files}
    table["reason"] = [reasons.get(f, "") for f in table["file"]]
    lines = [table.to_string(index=False, max_colwidth=90),
             f"{summary.files_found} files, {summary.files_imported} imported, {len(summary.skipped_files)} "
             f"skipped; {summary.frames} frames (REF_* from {summary.energy_fidelity}; gaps "
             f"{summary.gaps_by_fidelity}); {len(summary.skipped_frames)} ionic steps skipped"]
    lines += [f"warning: {w}" for w in summary.warnings]
    return "\n".join(lines)
