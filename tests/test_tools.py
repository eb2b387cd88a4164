"""tools/check_gaps.py on bundled labelled frames: it leaves out what --exclude names, reads the DFT values of the
file, and its errors are the bundled ensembles' predictions minus them."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from ase.io import read, write

from capml.cli import ROOT


def test_check_gaps_scores_the_bundled_ensembles_on_held_out_frames(tmp_path):
    frames = read(ROOT / "data" / "ag3sbri" / "relaxed_r2.extxyz", ":3")
    write(tmp_path / "three.extxyz", frames)
    write(tmp_path / "seen.extxyz", frames[:1])
    out = tmp_path / "check.csv"
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "check_gaps.py"), str(tmp_path / "three.extxyz"),
                             "--exclude", str(tmp_path / "seen.extxyz"), "--out", str(out)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    table = pd.read_csv(out)
    assert list(table["structure_id"]) == [a.info["structure_id"] for a in frames[1:]]
    for fidelity in ("pbesol", "hse06"):
        np.testing.assert_allclose(table[f"dft_{fidelity}_eV"], [a.info[f"gap_{fidelity}"] for a in frames[1:]])
        difference = table[f"gnn_{fidelity}_eV"] - table[f"dft_{fidelity}_eV"]
        np.testing.assert_allclose(table[f"err_{fidelity}_eV"], difference)
        assert (table[f"gnn_{fidelity}_std_eV"] > 0).all()
    forces = [np.linalg.norm(a.arrays["REF_forces"], axis=1).max() for a in frames[1:]]
    np.testing.assert_allclose(table["max_force_eV_A"], forces)
    assert "MAE" in result.stdout


def test_cv_table_reports_mean_and_spread_over_fold_draws(tmp_path):
    import json

    breakdown = pd.read_csv(ROOT / "models" / "cv" / "hse06_mace.breakdown.csv")  # a real 3-draw comparison
    run = tmp_path / "hse06_mace"
    run.mkdir()
    (run / "cv_metrics.json").write_text(json.dumps({"target": "gap_hse06", "folds": 5, "seeds": [0, 1, 2],
                                                     "members": 1, "breakdown": breakdown.to_dict(orient="records")}))
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "cv_table.py"), str(run / "cv_metrics.json")],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    row = out[-1].split("|")
    overall = breakdown[breakdown["subset"] == "all"].iloc[0]
    assert row[1].strip() == "hse06_mace" and int(row[5]) == overall["n"]
    assert row[6].strip() == f"{overall['mae_mean']:.3f} ± {overall['mae_std']:.3f}"
    relaxed = breakdown[breakdown["subset"] == "kind=relaxed"].iloc[0]
    assert row[10].strip() == f"{relaxed['mae_mean']:.3f} ± {relaxed['mae_std']:.3f}"


def test_cv_table_structures_summarises_held_out_predictions(tmp_path):
    """Errors counted by hand: two relaxed frames (+0.03 and -0.10 eV), one MD frame that the prefix excludes."""
    import json

    run = tmp_path / "calibration_hse06"
    run.mkdir()
    (run / "cv_metrics.json").write_text("{}")
    (run / "calibration.json").write_text(json.dumps({"std_scale": 2.0}))
    pd.DataFrame({"structure_id": ["relaxed_a", "relaxed_b", "md_c"], "y_pred": [1.03, 1.40, 0.5],
                  "y_true": [1.00, 1.50, 0.9], "y_std": [0.02, 0.04, 0.01]}).to_csv(run / "cv_predictions.csv")
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "cv_table.py"), str(run / "cv_metrics.json"),
                          "--structures", "relaxed_"], capture_output=True, text=True, check=True).stdout
    row = [c.strip() for c in out.splitlines()[-1].split("|")]
    # MAE (0.03 + 0.10) / 2, bias (0.03 - 0.10) / 2; inside 2 x σ: 0.03 <= 0.04 yes, 0.10 <= 0.08 no
    assert row[2:8] == ["2", "0.065", "-0.035", "1 of 2", "50%", "`relaxed_b` -0.10"]



def _load_tool(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_settled_time_is_the_last_exit_from_the_tolerance_band():
    protocol_table = _load_tool("protocol_table")
    times = np.arange(6) * 1000.0
    # final value 1.00; 0.97 at 2 ps is the last point outside ± 0.02, so settled from 3 ps
    assert protocol_table.settled_fs(times, np.array([1.2, 0.9, 0.97, 1.01, 0.99, 1.0]), 0.02) == 3000.0
    assert protocol_table.settled_fs(times, np.full(6, 1.0), 0.02) == 0.0


def test_protocol_table_pools_independent_runs_replica_by_replica(tmp_path):
    """Two run folders (two seeds) of one configuration: the pooled mean is the mean of the replicas' means over the
    frames after discard_fs, its error their standard error, computed here from the bundled ensemble's own gaps."""
    from capml.models.predict import GapPredictor

    protocol_table = _load_tool("protocol_table")
    frames = [a for a in read(ROOT / "data" / "ag3sbri" / "md_check_paper300_kmesh_structures.extxyz", ":")
              if float(a.info["x"]) == 0.0][:8]
    trajectories = {"seed0": frames[:4], "seed1": frames[4:]}
    for folder, snapshots in trajectories.items():
        (tmp_path / folder / "md").mkdir(parents=True)
        for i, atoms in enumerate(snapshots):
            atoms.info = {"time_fs": 500.0 * i, "temperature_K": 300.0}
        write(tmp_path / folder / "md" / "k0of8_d0_T300.extxyz", snapshots)

    hse = GapPredictor.from_checkpoint(ROOT / "models" / "gnn_gap_hse06")
    summary, running = protocol_table.run_average([tmp_path / "seed0", tmp_path / "seed1"], 500.0, hse)

    means = [hse.predict(snapshots[1:]).mean() for snapshots in trajectories.values()]  # frames at >= 500 fs
    row = summary.iloc[0]
    assert (row["config_id"], row["temperature"], row["replicas"]) == ("k0of8_d0", "T300", 2)
    assert row["mean_eV"] == pytest.approx(np.mean(means), abs=1e-6)
    assert row["stderr_eV"] == pytest.approx(np.std(means, ddof=1) / np.sqrt(2), abs=1e-6)
    assert row["range_eV"] == pytest.approx(abs(means[0] - means[1]), abs=1e-6)
    assert sorted(running["replica"].unique()) == ["seed0/r0", "seed1/r0"]
    assert len(running) == 6


def test_compare_maps_reports_each_points_change_and_refuses_a_file_without_the_columns(tmp_path):
    compare_maps = _load_tool("compare_maps")
    first = pd.read_csv(ROOT / "models" / "eg_map_gaps_summary.csv")
    second = pd.read_csv(ROOT / "models" / "eg_map_ens5_gaps_summary.csv")
    table = compare_maps.compare(first, second)
    assert len(table) == len(first) == 36
    point = (first["x"] == 0.5) & (first["temperature_K"] == 600)
    row = table[(table["x"] == 0.5) & (table["T_K"] == 600)].iloc[0]
    expected = second.loc[point.values, "boltzmann_gap_T_eV"].item() - first.loc[point.values, "boltzmann_gap_T_eV"].item()
    assert row["dEgT_eV"] == pytest.approx(expected)
    plot = tmp_path / "maps.png"
    assert compare_maps.main([str(ROOT / "models" / "eg_map_gaps_summary.csv"),
                              str(ROOT / "models" / "eg_map_ens5_gaps_summary.csv"), "--plot", str(plot)]) == 0
    assert plot.stat().st_size > 0
    first.drop(columns="boltzmann_gap_0_eV").to_csv(tmp_path / "bad.csv", index=False)
    assert compare_maps.main([str(tmp_path / "bad.csv"), str(ROOT / "models" / "eg_map_gaps_summary.csv")]) == 2
