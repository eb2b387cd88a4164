"""Stage 1: every symmetry-inequivalent decoration of each composition, relaxed and ranked by energy.

One relaxation per orbit of the supercell's space group instead of one per arrangement (e.g. 22 instead
of 254 for two species on the 8 X sites of a 2x2x2 anti-perovskite cell); the multiplicity of each decoration (its
orbit size) is what a configurational average weights it by. Each relaxed structure is appended to
``relaxed.extxyz`` as soon as it is done, so a killed run skips what is already there. The relaxations run one
after the other through ASE, or ``batch_size`` at a time in one torch-sim state (``relaxer="batched"``).
"""

from __future__ import annotations

import logging
import zlib
from math import comb
from pathlib import Path
from typing import Sequence

from matplotlib.figure import Figure  # noqa: E402  (no pyplot: importing capml never switches a backend)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from ase.io import read, write  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from capml.errors import InputError  # noqa: E402
from capml.simulate.relax import Relaxed, relax, relax_batch  # noqa: E402
from capml.structures.system import SolidSolution  # noqa: E402
from capml.structures.thermal import uniform_rattle  # noqa: E402
from capml.io.jsonio import write_json  # noqa: E402

log = logging.getLogger("capml.simulate")

RELAXED = "relaxed.extxyz"
# the 0 K reference of each configuration: relaxed (positions and cell, from the ideal or a rattled start), or static
# (the decorated Vegard cell with every atom on its ideal site, as the paper's Eg(0); energy and forces only)
REFERENCES = ("relaxed", "static")
TABLE = "energies.csv"
RELAXERS = ("ase", "batched")


def relax_configurations(
    system: SolidSolution,
    compositions: Sequence[int],
    calculator,  # an ASE Calculator (relaxer="ase") or a torch-sim model computing stress (relaxer="batched")
    out_dir: str | Path,
    fmax_eV_A: float = 0.01,
    max_steps: int = 500,
    optimizer: str = "FIRE",
    max_enumerate: int = 20000,
    random_arrangements: int = 100,
    seed: int = 0,
    volume_warning_percent: float = 5.0,
    relaxer: str = "ase",
    batch_size: int = 32,
    rattle_A: float = 0.0,
    reference: str = "relaxed",
) -> pd.DataFrame:
    """Relax every inequivalent decoration of each composition; returns (and writes) the ranked table. A relaxed
    volume more than ``volume_warning_percent`` away from the starting (Vegard) cell is logged as a warning: an
    MLIP that swells or collapses a cell is usually outside its training data, and every later stage inherits it.

    ``relaxer="ase"``: one decoration at a time, ``calculator`` an ASE calculator and ``optimizer`` the ASE
    optimiser. ``relaxer="batched"``: ``batch_size`` decorations at a time in one torch-sim state, ``calculator`` a
    torch-sim model that computes stress (:func:`capml.simulate.mlip.batched_model`), FIRE only; the same FIRE
    steps as the ASE path, so the same minima up to rounding (:func:`capml.simulate.relax.relax_batch`).

    ``rattle_A`` > 0 displaces every starting structure by a uniform rattle of that amplitude (seeded by ``seed``
    and the decoration) before it relaxes. A high-symmetry start of a harmonically unstable crystal (cubic
    perovskites, anti-perovskites) has zero forces by symmetry and stays on its saddle point; a rattle lets it fall
    into a distorted minimum, as the ordered decorations of lower symmetry do anyway.

    ``reference="static"``: no relaxation; each configuration is its decorated Vegard cell with the atoms on their
    ideal sites (energy, forces and stress of the model there), the 0 K reference of a static, undistorted Eg(0).
    The reference is recorded in every frame (info ``reference``) and in the table; a folder relaxed with the other
    reference is refused."""
    if reference not in REFERENCES:
        raise InputError(f"reference={reference!r}: expected one of {list(REFERENCES)}")
    if reference == "static":
        if float(rattle_A) > 0:
            raise InputError(f"reference='static' keeps the atoms on their ideal sites: rattle_A={rattle_A}, "
                             "expected 0")
        max_steps = 0
    if relaxer not in RELAXERS:
        raise InputError(f"relaxer={relaxer!r}: expected one of {list(RELAXERS)}")
    if relaxer == "batched" and optimizer != "FIRE":
        raise InputError(f"relaxer='batched' runs FIRE, not optimizer={optimizer!r} (use relaxer='ase' for it)")
    if int(batch_size) < 1:
        raise InputError(f"batch_size={batch_size}: expected an integer >= 1")
    if float(rattle_A) < 0:
        raise InputError(f"rattle_A={rattle_A}: expected an amplitude >= 0 (Å)")

    def start_of(k, decoration):
        start = system.build(decoration)
        if rattle_A > 0:
            stream = [int(seed), int(k), zlib.crc32(decoration.config_id.encode())]  # one per decoration
            start = uniform_rattle(start, float(rattle_A), stream)  # a copy, info kept
        return start

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RELAXED
    existing = read(path, ":") if path.exists() else []
    other = sorted({str(a.info.get("reference", "relaxed")) for a in existing} - {reference})
    if other:
        raise InputError(f"{path}: holds configurations with reference={other[0]}, expected {reference} "
                         "(use another workdir for another 0 K reference)")
    done = {a.info["config_id"] for a in existing}
    todo = [(k, d) for k in compositions for d in system.decorations(
        k, max_enumerate=max_enumerate, n_random=random_arrangements, seed=seed) if d.config_id not in done]

    def save(k, decoration, start_volume_A3: float, result: Relaxed) -> None:  # appended as each one finishes
        atoms = result.atoms
        # a static reference takes no step: "converged" says whether its forces already vanish (by symmetry)
        converged = result.max_force_eV_A < fmax_eV_A if reference == "static" else result.converged
        atoms.info.update(config_id=decoration.config_id, x=decoration.x, n_occupied=k,
                          multiplicity=decoration.multiplicity, energy_eV=result.energy_eV,
                          max_force_eV_A=result.max_force_eV_A, steps=result.steps, converged=bool(converged),
                          start_volume_A3=start_volume_A3, reference=reference)
        write(path, atoms, format="extxyz", append=True)
        bar.update()

    with tqdm(total=len(todo), desc="relax configurations", unit="config") as bar:
        if relaxer == "ase":
            for k, decoration in todo:
                start = start_of(k, decoration)
                save(k, decoration, start.get_volume(), relax(start, calculator, fmax_eV_A, max_steps, optimizer))
        else:
            for first in range(0, len(todo), int(batch_size)):
                chunk = todo[first:first + int(batch_size)]
                starts = [start_of(k, decoration) for k, decoration in chunk]
                relax_batch(starts, calculator, fmax_eV_A, max_steps,
                            on_done=lambda i, result: save(*chunk[i], starts[i].get_volume(), result))
    table = ranked_table(read(path, ":"), compositions)
    table.to_csv(out_dir / TABLE, index=False)
    swollen = table[table["volume_change_percent"].abs() > volume_warning_percent]
    if len(swollen):
        worst = swollen.loc[swollen["volume_change_percent"].abs().idxmax()]
        log.warning("%d of %d relaxed configurations changed volume by more than %g %% from the starting cell "
                    "(largest: %s, %+.1f %%): the MLIP is probably outside its training data there; label them "
                    "(stage=label on relaxed.extxyz) and refit before trusting what follows", len(swollen),
                    len(table), volume_warning_percent, worst["config_id"], worst["volume_change_percent"])
    n_sites = system.n_sites
    write_json((out_dir / "relaxation_count.json"), {
        "compositions": list(map(int, compositions)),
        "relaxations_inequivalent": int(len(table)),
        "relaxations_all_arrangements": int(sum(comb(n_sites, k) for k in compositions)),
    }, indent=1)
    plot_energies(table, out_dir / "energies.png", system.x_label)
    return table


def ranked_table(frames, compositions: Sequence[int]) -> pd.DataFrame:
    rows = [{key: a.info[key] for key in ("config_id", "x", "n_occupied", "multiplicity", "energy_eV",
                                           "max_force_eV_A", "steps", "converged")}
            | {"reference": str(a.info.get("reference", "relaxed"))}
            | {"n_atoms": len(a), "volume_A3": a.get_volume(),
               "volume_change_percent": 100 * (a.get_volume() / a.info["start_volume_A3"] - 1)
               if "start_volume_A3" in a.info else np.nan} for a in frames]
    table = pd.DataFrame(rows)
    table = table[table["n_occupied"].isin(list(compositions))].copy()
    table["energy_per_atom_eV"] = table["energy_eV"] / table["n_atoms"]
    lowest = table.groupby("x")["energy_per_atom_eV"].transform("min")
    table["above_lowest_meV_per_atom"] = 1000 * (table["energy_per_atom_eV"] - lowest)
    table["rank"] = table.groupby("x")["energy_eV"].rank(method="first").astype(int) - 1
    return table.sort_values(["x", "rank"]).reset_index(drop=True)


def read_relaxed(out_dir: str | Path) -> dict[str, object]:
    """Relaxed structures by config_id."""
    path = Path(out_dir) / RELAXED
    if not path.exists():
        raise InputError(f"{path}: no relaxed configurations; run `simulate.py stage=configurations` first")
    return {a.info["config_id"]: a for a in read(path, ":")}


def lowest(table: pd.DataFrame, n_per_composition: int | None) -> pd.DataFrame:
    """The ``n_per_composition`` lowest-energy configurations of each composition (None: all)."""
    return table if n_per_composition is None else table[table["rank"] < n_per_composition]


def plot_energies(table: pd.DataFrame, path: Path, x_label: str = "x") -> None:
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    sc = ax.scatter(table["x"], table["above_lowest_meV_per_atom"], s=10 + 4 * table["multiplicity"],
                    c=table["multiplicity"], cmap="viridis", edgecolor="k", linewidth=0.3)
    fig.colorbar(sc, ax=ax, label="multiplicity")
    ax.set_xlabel(x_label)
    ax.set_ylabel("E − E_lowest (meV/atom)")
    reference = table["reference"].iloc[0] if "reference" in table and len(table) else "relaxed"
    ax.set_title(f"{len(table)} inequivalent configurations, {reference}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
