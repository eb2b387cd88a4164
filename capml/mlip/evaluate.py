"""Accuracy of MACE models on the held-out test split, and their harmonic phonons against DFT.

Errors: energy per atom (meV/atom), forces (meV/Å, per component), stress (GPa, per component) as MAE, RMSE
and R². Predictions are batched through mace's own data pipeline. Phonons: force constants from each model by
phonopy finite displacements on the cell of the DFT reference (read from its phonopy.yaml), frequencies at Γ
and along the seekpath band path of the primitive cell, compared branch by branch (sorted) as MAE in THz.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Mapping, Sequence

from matplotlib.figure import Figure  # noqa: E402  (no pyplot: importing capml never switches a backend)
from matplotlib.lines import Line2D  # noqa: E402
import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.units import GPa  # noqa: E402
from phonopy import Phonopy  # noqa: E402
from phonopy.phonon.band_structure import get_band_qpoints_by_seekpath  # noqa: E402

from capml.io.contract import ENERGY_KEY, FORCES_KEY, STRESS_KEY, read_dataset  # noqa: E402
from capml.mlip.calculator import mace_calculator  # noqa: E402
from capml.phonons import harmonic_phonons, load_phonons, to_ase_atoms  # noqa: E402
from capml.io.jsonio import write_json  # noqa: E402
from capml.io.paths import portable_path  # noqa: E402
from capml.metrics import ParityPanel, parity_figure, regression_metrics  # noqa: E402

log = logging.getLogger("capml.mlip")

# quantity -> (unit, factor from the model's eV-based unit)
UNITS = {"energy": ("meV/atom", 1e3), "forces": ("meV/A", 1e3), "stress": ("GPa", 1.0 / GPa)}


def predict(model_path: str | Path, frames: Sequence[Atoms], dtype: str = "float64", device: str = "cpu",
            batch_size: int = 16) -> dict[str, np.ndarray]:
    """Energies (eV), forces (eV/Å, all atoms concatenated) and stresses (eV/Å³, 3x3) in batches."""
    from mace import data
    from mace.tools import torch_geometric, torch_tools
    from mace.tools.utils import AtomicNumberTable

    calc = mace_calculator(model_path, dtype=dtype, device=device)  # checks the file, converts dtype
    model = calc.models[0]
    for parameter in model.parameters():
        parameter.requires_grad = False
    heads = getattr(model, "heads", None)
    z_table = AtomicNumberTable([int(z) for z in model.atomic_numbers])
    out = {"energy": [], "forces": [], "stress": []}
    with torch_tools.default_dtype(dtype):
        dataset = [
            data.AtomicData.from_config(data.config_from_atoms(a), z_table=z_table, cutoff=float(model.r_max),
                                        heads=heads)
            for a in frames
        ]
        loader = torch_geometric.dataloader.DataLoader(dataset, batch_size=batch_size, shuffle=False)
        for batch in loader:
            result = model(batch.to(device).to_dict(), compute_stress=True, training=False)
            out["energy"].append(result["energy"].detach().cpu().numpy())
            out["forces"].append(result["forces"].detach().cpu().numpy())
            out["stress"].append(result["stress"].detach().cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def references(frames: Sequence[Atoms]) -> dict[str, np.ndarray]:
    return {
        "energy": np.array([a.info[ENERGY_KEY] for a in frames]),
        "forces": np.concatenate([a.arrays[FORCES_KEY] for a in frames]),
        "stress": np.array([np.reshape(a.info[STRESS_KEY], (3, 3)) for a in frames]),
    }


def per_quantity(frames: Sequence[Atoms], values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Values in reporting units: energy per atom, forces and stress components."""
    n_atoms = np.array([len(a) for a in frames])
    return {q: np.ravel(values[q] / n_atoms if q == "energy" else values[q]) * UNITS[q][1] for q in UNITS}


def split_errors(model_path, frames, dtype="float64", device="cpu", batch_size=16):
    """{quantity: {n, mae, rmse, r2, unit}} and the (reference, predicted) arrays for parity plots."""
    ref = per_quantity(frames, references(frames))
    pred = per_quantity(frames, predict(model_path, frames, dtype, device, batch_size))
    metrics = {q: regression_metrics(ref[q], pred[q]) | {"unit": UNITS[q][0]} for q in UNITS}
    return metrics, {q: (ref[q], pred[q]) for q in UNITS}


def parity_plot(pairs: Mapping[str, Mapping[str, tuple]], metrics: Mapping[str, Mapping], path: Path) -> None:
    """One panel per quantity, one colour per model."""
    panels = [ParityPanel({f"{name}: MAE {metrics[name][q]['mae']:.3g}": model_pairs[q]
                           for name, model_pairs in pairs.items()},
                          xlabel=f"DFT {q} ({UNITS[q][0]})", ylabel=f"MACE {q} ({UNITS[q][0]})") for q in UNITS]
    parity_figure(panels).savefig(path, dpi=120)


def band_qpoints(phonon: Phonopy, n_points: int) -> tuple[list[np.ndarray], list[str], list[bool]]:
    return get_band_qpoints_by_seekpath(phonon.primitive, n_points)


def phonon_frequencies(phonon: Phonopy, qpoints: np.ndarray) -> np.ndarray:
    """(n_q, n_branch) frequencies in THz, ascending per q (imaginary ones negative)."""
    phonon.run_qpoints(qpoints)
    return np.sort(phonon.get_qpoints_dict()["frequencies"], axis=1)


def model_phonons(reference: Phonopy, calculator, displacement_A: float = 0.01) -> Phonopy:
    """Force constants of ``calculator`` on the reference's unit cell and supercell."""
    return harmonic_phonons(to_ase_atoms(reference.unitcell), calculator, reference.supercell_matrix,
                            displacement_A=displacement_A)


def phonon_errors(reference: Phonopy, phonons: Mapping[str, Phonopy], n_points: int = 51) -> tuple[dict, dict]:
    """MAE (THz) at Γ and along the band path of each model against ``reference``; frequencies for plotting."""
    bands, labels, connections = band_qpoints(reference, n_points)
    path_q = np.concatenate(bands)
    ref_gamma = phonon_frequencies(reference, np.zeros((1, 3)))
    ref_path = phonon_frequencies(reference, path_q)
    errors, curves = {}, {"reference": ref_path, "labels": labels, "segments": [len(b) for b in bands]}
    for name, phonon in phonons.items():
        gamma = phonon_frequencies(phonon, np.zeros((1, 3)))
        path = phonon_frequencies(phonon, path_q)
        errors[name] = {
            "gamma_mae_THz": float(np.mean(np.abs(gamma - ref_gamma))),
            "band_mae_THz": float(np.mean(np.abs(path - ref_path))),
            "gamma_THz": gamma[0].round(4).tolist(),
        }
        curves[name] = path
    errors["reference_gamma_THz"] = ref_gamma[0].round(4).tolist()
    return errors, curves


def band_plot(curves: Mapping, path: Path, title: str) -> None:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    x = np.arange(len(curves["reference"]))
    ax.plot(x, curves["reference"], "k-", lw=1.2)
    styles = iter(["C0--", "C3:", "C2-."])
    handles = [Line2D([], [], color="k", label="DFT")]
    for name, freqs in curves.items():
        if name in ("reference", "labels", "segments"):
            continue
        style = next(styles)
        ax.plot(x, freqs, style, lw=1)
        handles.append(Line2D([], [], color=style[:2], ls=style[2:], label=name))
    for edge in np.cumsum(curves["segments"])[:-1]:
        ax.axvline(edge - 0.5, color="grey", lw=0.5)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlim(0, len(x) - 1)
    ax.set_xticks([])
    ax.set_ylabel("frequency (THz)")
    ax.set_title(title + "  (" + " ".join(curves["labels"]) + ")", fontsize=8)
    ax.legend(handles=handles, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def evaluate_models(models: Mapping[str, str | Path], files, settings, out_dir: str | Path) -> dict:
    """Test-split errors and phonon MAE of each model; writes metrics.json, metrics.csv and PNGs in ``out_dir``."""
    out_dir = Path(out_dir)
    frames = read_dataset(files.test)
    metrics, pairs = {}, {}
    for name, path in models.items():
        metrics[name], pairs[name] = split_errors(path, frames, settings.dtype, settings.device, settings.batch_size)
        log.info("%s test: %s", name, {q: round(v["mae"], 4) for q, v in metrics[name].items()})
    parity_plot(pairs, metrics, out_dir / "parity.png")
    result = {"test": metrics, "n_test_frames": len(frames)}
    heldout = {}
    for path in settings.get("heldout") or []:  # sets no model trained on: relaxed minima, MD snapshots
        held = read_dataset(path)
        entry = heldout[portable_path(path)] = {"n_frames": len(held), "models": {}}
        for name, model in models.items():
            entry["models"][name] = split_errors(model, held, settings.dtype, settings.device, settings.batch_size)[0]
            log.info("%s on %s: %s", name, Path(path).name,
                     {q: round(v["mae"], 4) for q, v in entry["models"][name].items()})
    if heldout:
        result["heldout"] = heldout
    if settings.phonons:
        reference = load_phonons(settings.phonons)
        phonons = {name: model_phonons(reference, mace_calculator(path, "float64", settings.device))
                   for name, path in models.items()}
        result["phonons"], curves = phonon_errors(reference, phonons, settings.band_points)
        result["phonons"]["reference"] = portable_path(settings.phonons)
        band_plot(curves, out_dir / "phonons.png", f"harmonic phonons vs DFT ({Path(settings.phonons).parent.name})")
    write_json((out_dir / "metrics.json"), result, indent=2)
    with open(out_dir / "metrics.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "quantity", "unit", "mae", "rmse", "r2"])
        for name, per_q in metrics.items():
            for q, v in per_q.items():
                writer.writerow([name, q, v["unit"], v["mae"], v["rmse"], v["r2"]])
        for path, entry in heldout.items():
            for name, per_q in entry["models"].items():
                for q, v in per_q.items():
                    writer.writerow([f"{name} on {Path(path).name}", q, v["unit"], v["mae"], v["rmse"], v["r2"]])
        for name, v in result.get("phonons", {}).items():
            if isinstance(v, dict):
                writer.writerow([name, "phonon_gamma", "THz", v["gamma_mae_THz"], "", ""])
                writer.writerow([name, "phonon_band", "THz", v["band_mae_THz"], "", ""])
    return result
