"""stage=expansion: NVT and NPT side by side, lattice parameters recomputed from the trajectories by hand."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
from ase.io import read

from capml.simulate.stages import run_stage

from .conftest import simulate_config, tiny_pipeline_overrides


def test_expansion_puts_fixed_cell_and_npt_side_by_side(pipeline_run, mace_model_path, trained_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(pipeline_run / "configurations", workdir / "configurations")
    overrides = [*tiny_pipeline_overrides(mace_model_path, trained_run["out"] / "checkpoints" / "best.ckpt"),
                 "simulate.x=[0,1]", "simulate.md.n_steps=40", "simulate.md.configurations_per_composition=1",
                 "simulate.md.barostat_time_fs=50"]
    table = run_stage(simulate_config(workdir, "stage=expansion", *overrides))
    out = workdir / "expansion"
    assert (out / "expansion.png").exists() and len(table) == 4  # 2 compositions x 2 temperatures
    assert table.equals(pd.read_csv(out / "expansion.csv")) or np.allclose(
        table.select_dtypes("number"), pd.read_csv(out / "expansion.csv").select_dtypes("number"), equal_nan=True)
    for _, row in table.iterrows():
        name = f"{row['lowest_config']}_T{row['temperature_K']:g}"
        nvt = read(out / "nvt" / "md" / f"{name}.extxyz", ":")
        npt = read(out / "npt" / "md" / f"{name}.extxyz", ":")
        cells = len(nvt[0]) / 5  # 5-atom parent cell of the anti-perovskite
        # fixed cell: every NVT frame keeps the relaxed volume
        assert np.allclose([f.get_volume() for f in nvt], nvt[0].get_volume())
        assert np.isclose(np.cbrt(nvt[0].get_volume() / cells), row["lattice_0K_A"])
        # the barostat moves the cell; the table's lattice parameter is the frames' mean pseudo-cubic one
        volumes = np.array([f.get_volume() for f in npt])
        assert np.ptp(volumes) > 0
        assert np.isclose(np.cbrt(volumes / cells).mean(), row["lattice_A"])
        assert np.isclose(row["lattice_change_percent"], 100 * (row["lattice_A"] / row["lattice_0K_A"] - 1))
    # the expansion shift is the difference of the two gaps stages' own tables
    nvt_summary = pd.read_csv(out / "nvt" / "gaps" / "gaps_summary.csv")
    npt_summary = pd.read_csv(out / "npt" / "gaps" / "gaps_summary.csv")
    np.testing.assert_allclose(table["expansion_gap_shift_eV"],
                               npt_summary["lowest_gap_T_eV"] - nvt_summary["lowest_gap_T_eV"])
    np.testing.assert_allclose(table["lowest_gap_0_eV_nvt"], table["lowest_gap_0_eV_npt"])  # same relaxed cell
