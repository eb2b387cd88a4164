"""Convergence of reference labels against a DFT setting (k-mesh, cutoff): the same structures labelled at several
settings, compared on what the models learn from them.

For each setting and structure: the energy relative to the composition's ideal (symmetric) cell in meV/atom (the
distortion energy of a minimum, the thermal energy of an MD snapshot), the force MAE and largest stress difference
against the reference setting, and the gap. A setting is converged for a structure when it is within ``tolerances``
of the reference (2 meV/atom, 0.03 eV/Å, 0.02 eV by default, issue 26).

    python -m capml.labels.convergence data/ag3sbri/kconv_structures.extxyz \\
        --setting gamma=data/ag3sbri/relaxed.extxyz,data/ag3sbri/relaxed_rattle.extxyz,... \\
        --setting k2=data/ag3sbri/kconv_k2.extxyz --reference k2 --csv data/ag3sbri/kconv.csv

The structures file names each structure's role in info ``kconv_role`` (ideal, minimum, md) or, failing that,
by the file it was taken from (``kconv_source``: relaxed.extxyz = ideal, relaxed_rattle* = minimum, md_check* = md).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from ase import Atoms
from ase.io import read

from capml.errors import InputError


@dataclass(frozen=True)
class Tolerances:
    energy_meV_atom: float = 2.0
    force_eV_A: float = 0.03
    gap_eV: float = 0.02


def role(atoms: Atoms) -> str:
    if "kconv_role" in atoms.info:
        return str(atoms.info["kconv_role"])
    source = Path(str(atoms.info.get("kconv_source", ""))).name
    if source.startswith("relaxed_rattle"):
        return "minimum"
    if source.startswith("relaxed"):
        return "ideal"
    if source.startswith("md_check"):
        return "md"
    raise InputError(f"structure {atoms.info.get('structure_id')}: no info 'kconv_role' (ideal, minimum or md) and "
                     f"no recognised 'kconv_source' ({source!r})")


def labelled_frames(paths: Sequence[str | Path]) -> dict[str, Atoms]:
    """Labelled frames by structure_id over several dataset files (the last one wins)."""
    frames = {}
    for path in paths:
        if not Path(path).exists():
            raise InputError(f"{path}: no such dataset file")
        for atoms in read(path, ":"):
            frames[str(atoms.info["structure_id"])] = atoms
    return frames


def _gap(atoms: Atoms, fidelity: str) -> float:
    return float(atoms.info.get(f"gap_{fidelity}", np.nan))


def model_labels(structures: Sequence[Atoms], calculator) -> dict[str, Atoms]:
    """The structures labelled by a calculator (an MLIP), by structure_id, as a setting of the table: the MLIP's
    distortion energies and forces against DFT's on the same structures."""
    frames = {}
    for atoms in structures:
        here = atoms.copy()
        here.calc = calculator
        start = time.perf_counter()
        here.info["REF_energy"] = float(here.get_potential_energy())
        here.arrays["REF_forces"] = here.get_forces()
        here.info["REF_stress"] = here.get_stress(voigt=False)
        here.info["label_seconds"] = time.perf_counter() - start
        here.calc = None
        frames[str(atoms.info["structure_id"])] = here
    return frames


def convergence_table(structures: Sequence[Atoms], settings: Mapping[str, Sequence[str | Path]], reference: str,
                      fidelity: str = "pbesol", tolerances: Tolerances = Tolerances(),
                      models: Mapping[str, object] | None = None) -> pd.DataFrame:
    """One row per (setting, structure) labelled at that setting and at ``reference``; errors against the reference.

    ``settings``: name -> dataset files holding its labels (matched by structure_id). The energy of a structure is
    taken relative to the ideal cell of its composition at the same setting, so constant offsets between settings
    (a different k-mesh shifts every total energy) cancel, as they do for what the MLIP learns. ``models``: name ->
    calculator (an MLIP) that labels every structure as one more setting (:func:`model_labels`)."""
    if reference not in settings:
        raise InputError(f"reference setting {reference!r}: expected one of {list(settings)}")
    labelled = {name: labelled_frames(paths) for name, paths in settings.items()}
    for name, calculator in (models or {}).items():
        if name in labelled:
            raise InputError(f"model {name!r}: the name of a --setting too; expected another name")
        labelled[name] = model_labels(structures, calculator)
    ideal_of = {}
    for atoms in structures:
        if role(atoms) == "ideal":
            ideal_of.setdefault(float(atoms.info["x"]), str(atoms.info["structure_id"]))
    rows = []
    for name, frames in labelled.items():
        for atoms in structures:
            sid = str(atoms.info["structure_id"])
            # its own ideal cell (kconv_ideal: e.g. the ideal sites of the same cell), else the composition's first
            ideal = str(atoms.info.get("kconv_ideal") or ideal_of.get(float(atoms.info["x"])))
            if sid not in frames:
                continue
            here = frames[sid]
            n = len(here)
            row = {"setting": name, "structure_id": sid, "x": float(atoms.info["x"]),
                   "temperature_K": float(atoms.info.get("temperature", 0.0)), "role": role(atoms),
                   "energy_eV": float(here.info["REF_energy"]), "gap_eV": _gap(here, fidelity),
                   "volume_A3": here.get_volume(), "ideal_id": ideal,
                   "label_seconds": float(here.info.get("label_seconds", np.nan))}
            if ideal in frames:
                row["energy_vs_ideal_meV_atom"] = 1000 * (row["energy_eV"] - float(frames[ideal].info["REF_energy"])) / n
            ref = labelled[reference].get(sid)
            if ref is not None:
                ref_ideal = labelled[reference].get(ideal)
                if "energy_vs_ideal_meV_atom" in row and ref_ideal is not None:
                    ref_rel = 1000 * (float(ref.info["REF_energy"]) - float(ref_ideal.info["REF_energy"])) / n
                    row["energy_error_meV_atom"] = row["energy_vs_ideal_meV_atom"] - ref_rel
                row["force_mae_eV_A"] = float(np.abs(here.arrays["REF_forces"] - ref.arrays["REF_forces"]).mean())
                row["force_max_eV_A"] = float(np.abs(here.arrays["REF_forces"] - ref.arrays["REF_forces"]).max())
                stress = np.asarray(here.info["REF_stress"], float) - np.asarray(ref.info["REF_stress"], float)
                row["stress_max_GPa"] = float(np.abs(stress).max() * 160.21766)
                row["gap_error_eV"] = row["gap_eV"] - _gap(ref, fidelity)
            rows.append(row)
    table = pd.DataFrame(rows)
    if not len(table):
        raise InputError("no structure is labelled at any setting")
    def within(column: str, tolerance: float) -> pd.Series:
        values = table[column].abs() if column in table else pd.Series(np.nan, index=table.index)
        return values.isna() | (values <= tolerance)

    compared = table["force_mae_eV_A"].notna() if "force_mae_eV_A" in table else pd.Series(False, index=table.index)
    converged = within("energy_error_meV_atom", tolerances.energy_meV_atom) \
        & within("force_mae_eV_A", tolerances.force_eV_A) & within("gap_error_eV", tolerances.gap_eV)
    table["converged"] = converged.where(compared, None)  # empty where the reference setting has no label
    order = {name: k for k, name in enumerate(labelled)}
    return table.sort_values(["x", "temperature_K", "role", "setting"], key=lambda c: c.map(order)
                             if c.name == "setting" else c).reset_index(drop=True)


def setting_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per setting: the largest error over the structures compared with the reference, whether every one is within
    tolerance, and the mean cost of one label (``label_seconds``, wall seconds of the labeller) — the table to pick
    the cheapest converged setting from."""
    compared = table[table["converged"].notna()] if "converged" in table else table.iloc[:0]
    rows = []
    for name, group in table.groupby("setting", sort=False):
        here = compared[compared["setting"] == name]
        row = {"setting": name, "n_structures": len(group), "n_compared": len(here),
               "label_minutes": group["label_seconds"].mean() / 60 if "label_seconds" in group else np.nan}
        for column, out in (("energy_error_meV_atom", "max_energy_error_meV_atom"),
                            ("force_mae_eV_A", "max_force_mae_eV_A"), ("gap_error_eV", "max_gap_error_eV")):
            row[out] = here[column].abs().max() if column in here and len(here) else np.nan
        row["converged"] = bool(here["converged"].astype(bool).all()) if len(here) else None
        rows.append(row)
    return pd.DataFrame(rows)


def name_value_pairs(items: Sequence[str] | None, flag: str) -> dict[str, str]:
    """Command-line items NAME=VALUE as a dict; InputError naming ``flag`` for any other shape."""
    out = {}
    for item in items or ():
        name, _, value = item.partition("=")
        if not name or not value:
            raise InputError(f"{flag} {item!r}: expected NAME=VALUE")
        out[name] = value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("structures", nargs="+", help="the structures labelled at the settings (extxyz files, "
                        "structure_id)")
    parser.add_argument("--setting", action="append", required=True,
                        help="NAME=FILE[,FILE...]: the dataset files holding that setting's labels")
    parser.add_argument("--reference", required=True, help="the setting taken as converged")
    parser.add_argument("--model", action="append", default=[],
                        help="NAME=MODEL: a MACE model that labels every structure as one more setting")
    parser.add_argument("--fidelity", default="pbesol", help="the gap compared (gap_<fidelity>)")
    parser.add_argument("--csv", help="write the table here")
    args = parser.parse_args(argv)
    try:
        settings = {name: files.split(",") for name, files in name_value_pairs(args.setting, "--setting").items()}
        models = {}
        for name, path in name_value_pairs(args.model, "--model").items():
            from capml.mlip.calculator import mace_calculator

            models[name] = mace_calculator(path)
        structures = []
        for path in args.structures:
            if not Path(path).exists():
                raise InputError(f"{path}: no such structure file")
            structures.extend(read(path, ":"))
        table = convergence_table(structures, settings, args.reference, args.fidelity, models=models)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.csv:
        table.to_csv(args.csv, index=False)
    shown = [c for c in ("setting", "structure_id", "x", "temperature_K", "role", "energy_vs_ideal_meV_atom", "energy_error_meV_atom",
                         "force_mae_eV_A", "stress_max_GPa", "gap_eV", "gap_error_eV", "converged") if c in table]
    print(table[shown].to_markdown(index=False, floatfmt=".3f"))
    print()
    print(setting_summary(table).to_markdown(index=False, floatfmt=".3f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
