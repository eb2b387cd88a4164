"""End-member lattice constants from the labeller itself: an equation of state on the supercell.

Each end member's supercell (exactly the cell the sampler and the labels use, so the k-points and basis match
the dataset's) is scaled isotropically over a few percent, its energy computed with the labeller, and a
Birch-Murnaghan equation of state (``ase.eos.EquationOfState``) fitted: the volume of lowest energy gives the
lattice constant in the convention of ``system.lattice_constants`` (the parent at unit lattice constant; Å),
its curvature the bulk modulus. Isotropic scaling keeps the cell's shape: the answer for a cubic parent, the
best volume at the configured shape otherwise.

Every point is cached (``<out_dir>/<end member>/eos_points.json``) as it is computed: a killed run resumes where
it stopped, to the same numbers. ``simulate.py stage=lattice`` writes ``lattice_constants.json`` and prints the
override that puts them into the system config.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
from ase.eos import EquationOfState
from ase.units import GPa

from capml.errors import InputError
from capml.io.jsonio import write_json
from capml.structures.system import SolidSolution

log = logging.getLogger(__name__)

DEFAULT_STRAINS_PERCENT = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)


def fit_end_member(system: SolidSolution, species: str, labeller, out_dir: str | Path,
                   strains_percent: Sequence[float] = DEFAULT_STRAINS_PERCENT) -> dict:
    """Equation of state of the end member ``species``; returns its lattice constant (Å, the convention of
    ``system.lattice_constants``), volume per atom (Å³), bulk modulus (GPa) and every (strain, volume, energy)."""
    strains = sorted(float(s) for s in strains_percent)
    if len(strains) < 5:
        raise InputError(f"lattice.strains_percent={strains}: expected at least 5 strains for the equation of state")
    name = system.end_member_name(species)
    folder = Path(out_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    cache_path = folder / "eos_points.json"
    reference = system.end_member(species)
    cache = {}
    if cache_path.exists():
        import json

        cache = {f"{p['strain_percent']:+.4f}": p for p in json.loads(cache_path.read_text())["points"]}
    for k, strain in enumerate(strains):
        key = f"{strain:+.4f}"
        if key in cache:
            continue
        atoms = reference.copy()
        atoms.set_cell(reference.cell * (1 + strain / 100), scale_atoms=True)
        energy = float(labeller.label(atoms).energy_eV)
        cache[key] = {"strain_percent": strain, "volume_A3": float(atoms.get_volume()), "energy_eV": energy}
        write_json(cache_path, {"end_member": name, "points": sorted(cache.values(), key=lambda p: p["strain_percent"])})
        log.info("%s: strain %+.1f %% (%d of %d) E = %.5f eV", name, strain, k + 1, len(strains), energy)
    points = [cache[f"{s:+.4f}"] for s in strains]
    volumes = np.array([p["volume_A3"] for p in points])
    energies = np.array([p["energy_eV"] for p in points])
    eos = EquationOfState(volumes, energies, eos="birchmurnaghan")
    lowest = int(np.argmin(energies))
    try:
        v0, e0, bulk = eos.fit() if 0 < lowest < len(energies) - 1 else (volumes[lowest], np.nan, np.nan)
    except RuntimeError:  # scipy's fit did not converge: no minimum to speak of
        v0, e0, bulk = volumes[lowest], np.nan, np.nan
    if not volumes.min() < v0 < volumes.max() or not np.isfinite(bulk):
        raise InputError(f"{name}: the energy minimum lies outside the strains {strains[0]:+g}..{strains[-1]:+g} % "
                         f"(lowest energy at {v0:.1f} Å³, strained cells {volumes.min():.1f}-{volumes.max():.1f} Å³); widen "
                         f"lattice.strains_percent or start system.lattice_constants nearer")
    scale = (v0 / reference.get_volume()) ** (1 / 3)
    start = system.lattice_constants[species] if system.lattice_constants else None
    result = {"species": species, "end_member": name,  # without system.lattice_constants: the cell's scale factor
              "lattice_constant_A": None if start is None else start * scale, "start_lattice_constant_A": start,
              "cell_scale": scale, "volume_per_atom_A3": v0 / len(reference),
              "bulk_modulus_GPa": bulk / GPa, "energy_per_atom_eV": e0 / len(reference), "points": points}
    size = f"a = {start * scale:.4f} Å" if start is not None else f"cell x {scale:.4f}"
    _plot(eos, folder / "eos.png", f"{name}: {size}, B = {result['bulk_modulus_GPa']:.1f} GPa")
    return result


def end_member_lattice_constants(system: SolidSolution, labeller, out_dir: str | Path,
                                 strains_percent: Sequence[float] = DEFAULT_STRAINS_PERCENT) -> dict:
    """:func:`fit_end_member` for both end members; writes ``<out_dir>/lattice_constants.json``."""
    results = {s: fit_end_member(system, s, labeller, out_dir, strains_percent) for s in system.species}
    write_json(Path(out_dir) / "lattice_constants.json",
               {"fidelity": getattr(labeller, "fidelity", None), "end_members": results})
    return results


def _plot(eos: EquationOfState, path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 3.5))
    ax = fig.add_subplot()
    eos.plot(ax=ax, show=False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
