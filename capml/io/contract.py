"""The dataset contract (see README.md, "Dataset files"): which keys a frame holds, in which units and shapes,
the label settings that travel with the file, and the checks every dataset passes when it is read.

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

Structure files themselves (any format in, extxyz out, appended runs) are :mod:`capml.io.extxyz`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from ase import Atoms

from capml.errors import InputError
from capml.io.atomic import write_text
from capml.io.extxyz import check_structure_file, read_structures, write_frames

ENERGY_KEY = "REF_energy"
FORCES_KEY = "REF_forces"
STRESS_KEY = "REF_stress"
GAP_PREFIX = "gap_"
METADATA_KEYS = ("structure_id", "config_id", "x", "temperature", "sampling", "source")
LABEL_KEYS = (ENERGY_KEY, FORCES_KEY, STRESS_KEY)
MIN_DISTANCE_A = 0.5
# the heaviest element a structure may hold: MACE-MP, GPAW's and VASP's PAW data stop at plutonium (tblite at radon)
MAX_Z = 94


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


def read_dataset(
    path: str | Path,
    require: Sequence[str] = LABEL_KEYS,
    gaps: Sequence[str] = (),
) -> list[Atoms]:
    """Read and validate a dataset file. ``require`` lists REF_ keys, ``gaps`` fidelities (e.g. "pbesol")."""
    frames = read_structures(path)
    validate_frames(frames, require=require, gaps=gaps, where=str(path))
    return frames


def write_dataset(path: str | Path, frames: Sequence[Atoms], settings: DatasetSettings | None = None) -> None:
    """Write frames atomically (temp file + rename), then their label settings (when given) beside them."""
    write_frames(path, frames)
    if settings is not None:
        write_settings(path, settings)


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
                raise InputError(f"{here}: structure_id {shown(sid)} repeats frame {seen_ids[str(sid)]}; expected one "
                                 "frame per structure_id")
            seen_ids[str(sid)] = i
        for key in atoms.info:
            if key.startswith(GAP_PREFIX) and key[len(GAP_PREFIX):] not in gaps:
                gap = _as_float(atoms.info[key])
                if gap is None or not np.isfinite(gap) or gap < 0:
                    raise InputError(f"{here}: '{key}' = {shown(atoms.info[key])}, expected a finite gap >= 0 eV")
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
                value = _numbers(atoms.info[key], here, key, "a 3x3 stress in eV/Å^3")
                if value.shape not in ((3, 3), (6,), (9,)):
                    raise InputError(f"{here}: '{key}' has shape {value.shape}, expected 3x3")
            else:
                if key not in atoms.info:
                    raise InputError(f"{here}: missing info key '{key}'")
                value = atoms.info[key]
            if not np.all(np.isfinite(_numbers(value, here, key, "numbers"))):
                raise InputError(f"{here}: '{key}' contains NaN or inf")
        for fidelity in gaps:
            key = GAP_PREFIX + fidelity
            if key not in atoms.info:
                raise InputError(f"{here}: missing info key '{key}' (band gap in eV)")
            gap = _as_float(atoms.info[key])
            if gap is None or not np.isfinite(gap) or gap < 0:
                raise InputError(f"{here}: '{key}' = {shown(atoms.info[key])}, expected a finite gap >= 0 eV")


def _as_float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _numbers(value, here: str, key: str, expected: str) -> np.ndarray:
    """``value`` as a float array; InputError naming frame and key for text or other non-numbers."""
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{here}: '{key}' = {shown(value)}, expected {expected}") from None


def shown(value) -> str:
    """A value as a message shows it: numpy scalars as plain numbers (nan, not np.float64(nan)), text quoted."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return np.array2string(value, threshold=9, separator=", ")
    return repr(value)


def check_structure(atoms: Atoms, here: str) -> None:
    """A crystal the models can take: periodic in 3D, a cell of positive volume, no two atoms closer than
    ``MIN_DISTANCE_A`` (the same atom written twice)."""
    from ase.data import chemical_symbols
    from ase.neighborlist import neighbor_list

    if not np.all(atoms.pbc):
        raise InputError(f"{here}: pbc={atoms.pbc.tolist()}, expected a periodic crystal (pbc True in 3D)")
    volume = abs(np.linalg.det(atoms.cell.array))
    if not np.isfinite(volume) or volume < 1e-6:
        raise InputError(f"{here}: cell volume {volume:.3g} Å^3, expected a 3D cell (Lattice with positive volume)")
    if not np.all(np.isfinite(atoms.positions)):
        raise InputError(f"{here}: positions contain NaN or inf")
    unknown = sorted({int(z) for z in atoms.numbers if not 1 <= z <= MAX_Z})
    if unknown:
        name = chemical_symbols[unknown[0]] if unknown[0] < len(chemical_symbols) else "?"
        raise InputError(f"{here}: atomic number {unknown[0]} ({name}) is an element no labeller or model of capml "
                         f"knows; expected elements H to {chemical_symbols[MAX_Z]} (Z 1 to {MAX_Z})")
    if len(atoms) > 1:
        i, j, d = neighbor_list("ijd", atoms, MIN_DISTANCE_A)
        if len(d):
            k = int(np.argmin(d))
            raise InputError(f"{here}: atoms {i[k]} and {j[k]} are {d[k]:.3f} Å apart, expected at least "
                             f"{MIN_DISTANCE_A} Å (an atom written twice?)")


def refuse_mixed_settings(paths: Sequence[str | Path], keys: Sequence[str] | None, hint: str) -> None:
    """InputError naming the first file whose label settings disagree with the files before it, for the
    fidelities in ``keys`` ("REF" for REF_energy/forces/stress, a fidelity name for its gap; None: all): extra
    training files against the dataset (mlip.extra_train, data.extra_train). A file without a settings sidecar
    is refused beside one that has it: nothing would say which labeller made its labels."""
    merged, first = DatasetSettings(), None
    for path in paths:
        check_structure_file(path)  # a missing or empty file is that, not a file without settings
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


def merge_datasets(paths: Sequence[str | Path], out: str | Path, keep=None) -> list[Atoms]:
    """Concatenate datasets after checking their label settings agree per fidelity; ``keep`` (a function of a
    frame), when given, chooses the frames written."""
    settings = DatasetSettings()
    frames: list[Atoms] = []
    for path in paths:
        settings = settings.merged_with(read_settings(path), where=str(path))
        frames.extend(a for a in read_dataset(path, require=()) if keep is None or keep(a))
    counts = Counter(a.info.get("structure_id") for a in frames)
    duplicated = {i for i, c in counts.items() if i is not None and c > 1}
    if duplicated:
        raise InputError(f"{out}: structure_id values repeat across inputs: {sorted(duplicated)[:5]}")
    write_dataset(out, frames, settings)
    return frames
