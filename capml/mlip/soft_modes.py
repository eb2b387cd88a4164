"""The MLIP's soft Γ modes against DFT: the double-well curvature at the ideal sites, checked on the structures that
probe it.

``probes`` takes the harmonic Γ modes of an ideal (symmetric) supercell from an MLIP (phonopy finite
displacements), and writes the cell displaced along its softest modes so that the atom moving most moves by
``--max-displacement`` Å, with the mode's eigenvector and normal coordinate Q stored in the file. Those structures
are labelled with DFT (``simulate.py stage=label``, at any k-mesh). ``table`` then gives each mode's frequency from
every labelled set and every MLIP on the same structure, two ways:

- from the forces: the generalised force on the mode is -ω² Q (:func:`capml.phonons.mode_frequency_from_forces`);
- from the energy: E(Q) - E(0) = ω² Q² / 2 against the ideal cell labelled at the same setting.

Both are exact in the harmonic limit; at a finite Q they are the secant stiffness of the well, the same quantity for
DFT and the MLIP because the structure is the same. Imaginary frequencies are negative.

    python -m capml.mlip.soft_modes probes data/ag3sbri/static_cells.extxyz --ids static_paper_Ag3SI \\
        --model models/mace_finetuned.model --out probes.extxyz
    python -m capml.mlip.soft_modes table probes.extxyz --dft k2=data/ag3sbri/kmesh_k2.extxyz \\
        --model gamma_fit=models/mace_finetuned.model --csv soft_modes.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from ase import Atoms
from ase.io import read, write

from capml.errors import InputError
from capml.labels.convergence import labelled_frames, name_value_pairs
from capml.phonons import full_force_constants, gamma_modes, harmonic_phonons, mode_frequency_from_forces, mode_probe

EIGENVECTOR_KEY = "probe_eigenvector"


def soft_mode_probes(ideal: Atoms, calculator, n_modes: int = 1, max_displacement_A: float = 0.05,
                     symprec: float = 1e-3, acoustic_THz: float = 0.05) -> list[Atoms]:
    """``ideal`` displaced along each of its ``n_modes`` softest Γ modes (the MLIP's harmonic modes; the three
    translations, |ν| < ``acoustic_THz``, are skipped)."""
    phonon = harmonic_phonons(ideal, calculator, [1, 1, 1], symprec=symprec)
    frequencies, vectors = gamma_modes(ideal, full_force_constants(phonon))
    sid = str(ideal.info.get("structure_id", "ideal"))
    probes = []
    candidates = [m for m in np.argsort(frequencies) if abs(frequencies[m]) >= acoustic_THz]
    for mode in candidates[:n_modes]:
        probe, q = mode_probe(ideal, vectors[:, mode], max_displacement_A)
        probe.calc = None
        probe.info = {k: v for k, v in ideal.info.items() if k in ("config_id", "x", "temperature")}
        probe.info.update(structure_id=f"{sid}_mode{mode}", sampling="soft_mode_probe", kconv_role="probe",
                          kconv_ideal=sid, probe_mode=int(mode), probe_q_A_sqrt_amu=q,
                          probe_max_displacement_A=float(max_displacement_A),
                          probe_harmonic_THz=float(frequencies[mode]))
        for key in list(probe.arrays):
            if key not in ("numbers", "positions"):
                del probe.arrays[key]
        probe.arrays[EIGENVECTOR_KEY] = np.asarray(vectors[:, mode], float).reshape(len(ideal), 3)
        probes.append(probe)
    return probes


def _frequency_from_energy(delta_energy_eV: float, q: float) -> float:
    from phonopy.physical_units import get_physical_units

    omega2 = 2 * delta_energy_eV / q**2
    return float(np.sign(omega2) * np.sqrt(abs(omega2)) * get_physical_units().DefaultToTHz)


def soft_mode_table(probes: Sequence[Atoms], dft: Mapping[str, Sequence[str | Path]],
                    models: Mapping[str, object]) -> pd.DataFrame:
    """One row per probe and method (each DFT setting, each MLIP calculator): the mode's frequency from the
    forces and from the energy against the ideal cell (``kconv_ideal``) computed the same way."""
    rows = []
    for probe in probes:
        for key in ("probe_q_A_sqrt_amu", "kconv_ideal"):
            if key not in probe.info:
                raise InputError(f"probe {probe.info.get('structure_id')}: no info '{key}'; expected a structure "
                                 "written by `python -m capml.mlip.soft_modes probes`")
        if EIGENVECTOR_KEY not in probe.arrays:
            raise InputError(f"probe {probe.info.get('structure_id')}: no array '{EIGENVECTOR_KEY}'")
    ideals = {str(p.info["kconv_ideal"]) for p in probes}
    for name, paths in dft.items():
        frames = labelled_frames(paths)
        for probe in probes:
            sid, ideal = str(probe.info["structure_id"]), str(probe.info["kconv_ideal"])
            if sid not in frames:
                continue
            row = _row(probe, name, "dft", frames[sid].arrays["REF_forces"], float(frames[sid].info["REF_energy"]))
            if ideal in frames:
                row["frequency_energy_THz"] = _frequency_from_energy(
                    row.pop("energy_eV") - float(frames[ideal].info["REF_energy"]), row["q_A_sqrt_amu"])
            rows.append(row)
    for name, calculator in models.items():
        for probe in probes:
            atoms = probe.copy()
            atoms.calc = calculator
            row = _row(probe, name, "mlip", atoms.get_forces(), float(atoms.get_potential_energy()))
            ideal = probe.copy()  # the probe less its own displacement
            ideal.positions -= ideal.info["probe_q_A_sqrt_amu"] * ideal.arrays[EIGENVECTOR_KEY] \
                / np.sqrt(ideal.get_masses())[:, None]
            ideal.calc = calculator
            row["frequency_energy_THz"] = _frequency_from_energy(row.pop("energy_eV") - ideal.get_potential_energy(),
                                                                 row["q_A_sqrt_amu"])
            rows.append(row)
    if not rows:
        raise InputError(f"no probe ({sorted(str(p.info['structure_id']) for p in probes)}) is labelled in any "
                         f"DFT set and no model was given; ideal cells {sorted(ideals)}")
    return pd.DataFrame(rows)


def _row(probe: Atoms, method: str, kind: str, forces: np.ndarray, energy_eV: float) -> dict:
    q = float(probe.info["probe_q_A_sqrt_amu"])
    return {"structure_id": str(probe.info["structure_id"]), "x": float(probe.info.get("x", np.nan)),
            "mode": int(probe.info.get("probe_mode", -1)), "method": method, "kind": kind, "q_A_sqrt_amu": q,
            "max_displacement_A": float(probe.info.get("probe_max_displacement_A", np.nan)),
            "harmonic_THz_of_probing_model": float(probe.info.get("probe_harmonic_THz", np.nan)),
            "frequency_forces_THz": mode_frequency_from_forces(forces, probe.get_masses(),
                                                               probe.arrays[EIGENVECTOR_KEY], q),
            "energy_eV": energy_eV}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("probes", help="write ideal cells displaced along the MLIP's softest Γ modes")
    p.add_argument("ideal", help="extxyz of ideal cells (structure_id)")
    p.add_argument("--ids", nargs="+", help="structure_ids to probe (default: all)")
    p.add_argument("--model", required=True, help="MACE model whose harmonic modes are probed")
    p.add_argument("--modes", type=int, default=1, help="softest modes per cell")
    p.add_argument("--max-displacement", type=float, default=0.05, help="Å, of the atom moving most")
    p.add_argument("--out", required=True)
    t = sub.add_parser("table", help="frequencies of the probed modes from DFT labels and MLIPs")
    t.add_argument("probes", help="the file written by `probes`")
    t.add_argument("--dft", action="append", help="NAME=FILE[,FILE...]: labelled probes and their ideal cells")
    t.add_argument("--model", action="append", help="NAME=MODEL: a MACE model to evaluate on the probes")
    t.add_argument("--csv")
    args = parser.parse_args(argv)
    try:
        from capml.mlip.calculator import mace_calculator

        if args.command == "probes":
            cells = read(args.ideal, ":")
            if args.ids:
                cells = [a for a in cells if str(a.info.get("structure_id")) in args.ids]
                if not cells:
                    raise InputError(f"{args.ideal}: none of the structure_ids {args.ids}")
            calc = mace_calculator(args.model)
            probes = [p for cell in cells for p in soft_mode_probes(cell, calc, args.modes, args.max_displacement)]
            write(args.out, probes)
            for p in probes:
                print(p.info["structure_id"], f"{p.info['probe_harmonic_THz']:.3f} THz",
                      f"Q = {p.info['probe_q_A_sqrt_amu']:.4f} Å sqrt(amu)")
            return 0
        probes = read(args.probes, ":")
        dft = {name: files.split(",") for name, files in name_value_pairs(args.dft, "--dft").items()}
        models = {name: mace_calculator(path) for name, path in name_value_pairs(args.model, "--model").items()}
        table = soft_mode_table(probes, dft, models)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.csv:
        table.to_csv(args.csv, index=False)
    print(table.to_markdown(index=False, floatfmt=".3f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
