"""tools/protocol_table.py (README "Protocol") on the tiny pipeline run and on bundled DFT-labelled snapshots."""

from __future__ import annotations

import sys

import numpy as np
from ase.io import read, write

from capml.cli import ROOT


def test_protocol_table_averages_runs_and_puts_dft_beside_the_ensemble(pipeline_run, tmp_path, capsys):
    """tools/protocol_table.py on the tiny pipeline run: per configuration the replicas' mean over the frames after
    the discard time equals the bundled ensemble's mean over the same frames; DFT labels beside the ensemble."""
    sys.path.insert(0, str(ROOT / "tools"))
    import protocol_table

    from capml.models.predict import GapPredictor
    from capml.simulate.md import read_trajectory

    hse = GapPredictor.from_checkpoint(ROOT / "models" / "gnn_gap_hse06")
    summary, running = protocol_table.run_average(pipeline_run, 40.0, hse)
    frames = read_trajectory(pipeline_run / "md" / "k0of8_d0_T300.extxyz")
    kept = [f for f in frames if f.info["time_fs"] >= 40.0]
    row = summary[(summary["config_id"] == "k0of8_d0") & (summary["temperature"] == "T300")].iloc[0]
    assert abs(row["mean_eV"] - hse.predict(kept).mean()) < 1e-6  # one batch against another: float rounding
    assert running.groupby(["config_id", "replica"])["running_mean_eV"].last().notna().all()
    labelled = read(ROOT / "data" / "ag3sbri" / "md_check_eg_map_rattle.extxyz", ":4")
    write(tmp_path / "snapshots.extxyz", labelled)
    table = protocol_table.dft_check(tmp_path / "snapshots.extxyz", hse)
    assert list(table["n"]) == [sum(float(a.info["x"]) == x for a in labelled) for x in table["x"]]
    first = table.iloc[0]
    same_x = [a for a in labelled if float(a.info["x"]) == first["x"]]
    assert first["dft_mean_eV"] == np.mean([a.info["gap_hse06"] for a in same_x])
    protocol_table.plot(running, None, tmp_path / "running.png", protocol_table.PAPER_MARKS)
    assert (tmp_path / "running.png").stat().st_size > 10_000


def test_until_fs_keeps_one_window_and_npt_cell_reads_the_cell_of_each_frame(pipeline_run):
    sys.path.insert(0, str(ROOT / "tools"))
    import npt_cell
    import protocol_table

    from capml.models.predict import GapPredictor
    from capml.simulate.md import read_trajectory

    hse = GapPredictor.from_checkpoint(ROOT / "models" / "gnn_gap_hse06")
    frames = read_trajectory(pipeline_run / "md" / "k0of8_d0_T300.extxyz")
    times = [f.info["time_fs"] for f in frames]
    until = times[len(times) // 2]
    summary, _ = protocol_table.run_average(pipeline_run, times[1], hse, until_fs=until)
    window = [f for f in frames if times[1] <= f.info["time_fs"] <= until]
    row = summary[summary["config_id"] == "k0of8_d0"].iloc[0]
    assert abs(row["mean_eV"] - hse.predict(window).mean()) < 1e-6
    table = npt_cell.cell_table([pipeline_run], times[1], until, n_cells=8, block_fs=1000.0)
    mine = table[table["trajectory"] == "k0of8_d0_T300"].iloc[0]
    # NVT: the cell never moves, so every frame's a is the first frame's
    assert abs(mine["a_mean_A"] - (frames[0].get_volume() / 8) ** (1 / 3)) < 1e-9
    assert mine["a_min_A"] == mine["a_max_A"] == mine["a_start_A"]


def test_snapshot_time_from_info_or_from_the_id():
    sys.path.insert(0, str(ROOT / "tools"))
    import protocol_table
    from ase import Atoms

    assert protocol_table.snapshot_time_fs(Atoms(info={"time_fs": 40.0, "structure_id": "a_t50fs"})) == 40.0
    assert protocol_table.snapshot_time_fs(Atoms(info={"structure_id": "paper300kmesh_k0of8_d0_r1_t2500fs"})) == 2500.0
    assert np.isnan(protocol_table.snapshot_time_fs(Atoms(info={"structure_id": "static_paper_Ag3SI"})))


def test_settled_time_of_a_running_mean_and_seeds_pooled_from_several_runs(pipeline_run, tmp_path):
    """settled_fs on a series whose running mean is known: a mean that decays as 1/n settles within 0.02 eV of its
    last value where 1/n - 1/N first stays below the tolerance; run folders given together pool their replicas, each
    named by its folder."""
    import shutil

    sys.path.insert(0, str(ROOT / "tools"))
    import protocol_table

    from capml.models.predict import GapPredictor

    n = np.arange(1, 201)
    times = 10.0 * n
    running = 1.0 + 1.0 / n  # last value 1.005: 1/n - 1/200 is 0.0200 at n = 40, 0.0206 at n = 39
    assert protocol_table.settled_fs(times, running, 0.0201) == 400.0
    assert protocol_table.settled_fs(times, np.full(200, 1.3), 0.02) == 10.0

    other = tmp_path / "seed1"
    shutil.copytree(pipeline_run / "md", other / "md")
    hse = GapPredictor.from_checkpoint(ROOT / "models" / "gnn_gap_hse06")
    one, _ = protocol_table.run_average(pipeline_run, 40.0, hse)
    both, running = protocol_table.run_average([pipeline_run, other], 40.0, hse)
    assert (both["replicas"] == 2 * one["replicas"]).all() and np.allclose(both["mean_eV"], one["mean_eV"])
    assert (both["range_eV"] < 1e-6).all()  # the same trajectories twice
    replicas = both.attrs["replicas"]
    assert {r.split("/")[0] for r in replicas["replica"]} == {pipeline_run.name, "seed1"}
    assert (replicas["auto_discard_ps"] >= 0).all() and (replicas["settled_ps"] >= 0.04).all()
