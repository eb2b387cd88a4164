"""Thermal expansion: the lattice parameter against T, and ΔEg(T) with and without expansion, side by side.

``simulate.py stage=expansion`` runs the md and gaps stages twice on the relaxed configurations of the
configurations stage: at the fixed 0 K cell (NVT) and at ``simulate.md.pressure_GPa`` with the Langevin
barostat (NPT), into ``<workdir>/expansion/{nvt,npt}/``. ``expansion.csv`` puts, per composition and
temperature, the mean pseudo-cubic lattice parameter of the NPT runs (the cube root of the volume per parent cell,
with its standard error over the replicas' frames) beside <Eg>_T and ΔEg of both ensembles and their difference:
the part of the gap's temperature shift that thermal expansion carries. ``expansion.png`` plots both.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

log = logging.getLogger("capml.simulate")

ENSEMBLES = ("nvt", "npt")


def lattice_parameters(run, discard_fs: float) -> pd.DataFrame:
    """Per MD run of ``run`` (its md folder): mean volume per atom (Å³) and pseudo-cubic lattice parameter (Å) of
    the frames after ``discard_fs``, with standard errors from block averages (5 blocks)."""
    cells_per_frame = float(np.prod(run.system.supercell))  # parent cells in the simulated supercell
    rows = []
    x_of = dict(zip(run.table()["config_id"], run.table()["x"]))
    for r in run.md_runs():
        frames = run.trajectory(r, discard_fs)
        if not frames:
            continue
        volumes = np.array([f.get_volume() for f in frames])
        a = np.cbrt(volumes / cells_per_frame)
        blocks = np.array_split(a, min(5, len(a)))
        means = np.array([b.mean() for b in blocks])
        rows.append({"config_id": r.config_id, "x": float(x_of[r.config_id]), "temperature_K": r.temperature_K,
                     "replica": r.replica, "lattice_A": float(a.mean()),
                     "lattice_err_A": float(means.std(ddof=1) / np.sqrt(len(means))) if len(means) > 1 else np.nan,
                     "volume_per_atom_A3": float(volumes.mean() / len(frames[0])),
                     "lattice_0K_A": float(np.cbrt(run.relaxed()[r.config_id].get_volume() / cells_per_frame))})
    table = pd.DataFrame(rows)
    # replicas: mean, and the error of the mean from their spread where there are several, else the block error
    def combine(group):
        n = len(group)
        err = group["lattice_A"].std(ddof=1) / np.sqrt(n) if n > 1 else group["lattice_err_A"].iloc[0]
        return pd.Series({"x": group["x"].iloc[0], "lattice_A": group["lattice_A"].mean(), "lattice_err_A": err,
                          "volume_per_atom_A3": group["volume_per_atom_A3"].mean(),
                          "lattice_0K_A": group["lattice_0K_A"].iloc[0], "replicas": n})
    return table.groupby(["config_id", "temperature_K"]).apply(combine, include_groups=False).reset_index()


def thermal_expansion(run, settings, md_stage, gaps_stage) -> pd.DataFrame:
    """The md and gaps stages in NVT and NPT (see the module docstring); returns and writes expansion.csv."""
    out = run.folder("expansion")
    summaries, lattices = {}, {}
    for ensemble in ENSEMBLES:
        sub = run.moved(md=f"expansion/{ensemble}/md", gaps=f"expansion/{ensemble}/gaps")
        s = dataclasses.replace(settings, md=dataclasses.replace(settings.md, ensemble=ensemble))
        log.info("expansion: MD in %s", ensemble.upper())
        md_stage(sub, s)
        summaries[ensemble] = gaps_stage(sub, s)
        discard = 0.0 if s.gaps.auto else float(s.gaps.discard_fs)
        lattices[ensemble] = lattice_parameters(sub, discard)
    keys = ["x", "temperature_K"]
    columns = ["lowest_gap_0_eV", "lowest_gap_T_eV", "lowest_gap_T_total_err_eV", "lowest_delta_gap_eV",
               "lowest_delta_gap_total_err_eV", "lowest_delta_gap_percent"]
    table = summaries["nvt"][keys + ["lowest_config"] + columns].rename(
        columns={c: f"{c}_nvt" for c in columns})
    table = table.merge(summaries["npt"][keys + columns].rename(columns={c: f"{c}_npt" for c in columns}), on=keys)
    npt = lattices["npt"].rename(columns={"config_id": "lowest_config"})
    table = table.merge(npt[["lowest_config", "temperature_K", "lattice_A", "lattice_err_A", "lattice_0K_A",
                             "volume_per_atom_A3"]], on=["lowest_config", "temperature_K"], how="left")
    table["lattice_change_percent"] = 100 * (table["lattice_A"] / table["lattice_0K_A"] - 1)
    table["expansion_gap_shift_eV"] = table["lowest_gap_T_eV_npt"] - table["lowest_gap_T_eV_nvt"]
    table["expansion_gap_shift_err_eV"] = np.hypot(table["lowest_gap_T_total_err_eV_npt"],
                                                   table["lowest_gap_T_total_err_eV_nvt"])
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "expansion.csv", index=False)
    plot_expansion(table, out / "expansion.png", run.system.x_label)
    shown = ["x", "temperature_K", "lattice_A", "lattice_err_A", "lattice_change_percent", "lowest_delta_gap_eV_nvt",
             "lowest_delta_gap_eV_npt", "expansion_gap_shift_eV", "expansion_gap_shift_err_eV"]
    log.info("thermal expansion (lowest configuration of each composition; NPT at %g GPa):\n%s",
             settings.md.pressure_GPa, table[shown].round(4).to_string(index=False))
    return table


def plot_expansion(table: pd.DataFrame, path: Path, x_label: str = "x") -> Path:
    """Left: lattice parameter against T (0 K: the relaxed cell); right: ΔEg(T) at fixed cell and with expansion."""
    fig = Figure(figsize=(10, 4))
    ax_a, ax_g = fig.subplots(1, 2)
    for i, (x, group) in enumerate(table.groupby("x")):
        group = group.sort_values("temperature_K")
        colour = f"C{i}"
        t = np.concatenate([[0.0], group["temperature_K"].to_numpy(float)])
        a = np.concatenate([[group["lattice_0K_A"].iloc[0]], group["lattice_A"].to_numpy(float)])
        err = np.concatenate([[0.0], group["lattice_err_A"].fillna(0).to_numpy(float)])
        ax_a.errorbar(t, a, yerr=err, marker="o", color=colour, capsize=3, label=f"{x_label} = {x:g}")
        for ensemble, style in (("nvt", "--"), ("npt", "-")):
            d = np.concatenate([[0.0], group[f"lowest_delta_gap_eV_{ensemble}"].to_numpy(float)])
            e = np.concatenate([[0.0], group[f"lowest_delta_gap_total_err_eV_{ensemble}"].to_numpy(float)])
            ax_g.errorbar(t, d, yerr=e, marker="o", linestyle=style, color=colour, capsize=3,
                          label=f"{x_label} = {x:g}, {'fixed cell (NVT)' if ensemble == 'nvt' else 'expanding (NPT)'}")
    ax_a.set(xlabel="T (K)", ylabel="pseudo-cubic lattice parameter (Å)", title="thermal expansion (NPT)")
    ax_g.set(xlabel="T (K)", ylabel="ΔEg(T) = <Eg>_T − Eg(0) (eV)", title="gap shift with and without expansion")
    ax_g.axhline(0, color="grey", lw=0.5)
    ax_a.legend(fontsize=7)
    ax_g.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)
