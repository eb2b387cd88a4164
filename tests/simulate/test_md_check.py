"""stage=md_check: MD snapshots labelled with a reference and compared with the MLIP and the GNN."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from capml.errors import InputError
from capml.simulate.md import read_trajectory, trajectory_path
from capml.simulate.md_check import pick_snapshots
from capml.simulate.stages import run_stage

from .conftest import simulate_config, tiny_pipeline_overrides


def test_md_check_against_the_same_potential_is_exact_and_resumes(pipeline_run, mace_model_path, trained_run,
                                                                   tmp_path):
    import shutil

    run = tmp_path / "run"  # a copy: the shared pipeline run is read by other tests at the same time
    shutil.copytree(pipeline_run, run, ignore=shutil.ignore_patterns("md_check"))
    # the reference is the MLIP itself through the label stage's ASE path: every error must vanish, and the
    # MLIP energies must equal those torch-sim recorded during the MD (float32) for the same frames
    overrides = [*tiny_pipeline_overrides(mace_model_path, trained_run["out"] / "checkpoints" / "best.ckpt"),
                 "labels=ase", "labels.labeller.calculator._target_=capml.mlip.calculator.mace_calculator",
                 f"+labels.labeller.calculator.model_path={mace_model_path}", "labels.labeller.fidelity=mace"]
    table = run_stage(simulate_config(run, "stage=md_check", *overrides))
    out = run / "md_check"
    assert (out / "md_check.csv").exists() and (out / "md_check.png").exists()
    assert len(table) == 6 * 2 and set(table["time_fs"]) == {40.0, 80.0}  # 21 frames every 4 fs: frames 10, 20
    assert np.allclose(table["energy_error_meV_per_atom"], 0.0, atol=1e-6)
    assert np.allclose(table["force_mae_eV_A"], 0.0, atol=1e-7)  # extxyz keeps 8 decimals and table["gap_ref_eV"].isna().all()
    for _, row in table.iterrows():
        frames = read_trajectory(trajectory_path(run / "md", row["system"]))
        (frame,) = [f for f in frames if f.info["time_fs"] == row["time_fs"]]
        assert row["energy_mlip_eV_per_atom"] * len(frame) == pytest.approx(frame.info["energy_eV"], abs=2e-3)
    before = (out / "dataset.extxyz").stat().st_mtime_ns
    again = run_stage(simulate_config(run, "stage=md_check", *overrides))
    assert (out / "dataset.extxyz").stat().st_mtime_ns == before  # nothing relabelled
    pd.testing.assert_frame_equal(again, table)


def test_pick_snapshots_spacing_and_errors():
    from ase.build import bulk

    frames = [bulk("Cu", cubic=True) for _ in range(11)]
    for k, f in enumerate(frames):
        f.info["time_fs"] = 5.0 * k
    picked = pick_snapshots([("run", frames)], 3)
    assert [a.info["time_fs"] for a in picked] == [15.0, 35.0, 50.0]  # frames 3.33->3, 6.67->7, 10
    assert picked[-1].info["structure_id"] == "run_t50fs"
    assert pick_snapshots([("run", frames)], 1, prefix="r1_")[0].info["structure_id"] == "r1_run_t50fs"
    with pytest.raises(InputError, match="snapshots_per_run=0"):
        pick_snapshots([("run", frames)], 0)
    with pytest.raises(InputError, match="trajectory run: 1 frame"):
        pick_snapshots([("run", frames[:1])], 2)


def test_snapshots_at_given_times_from_the_command_line_add_only_new_ones(pipeline_run, tmp_path, capsys):
    from ase.io import read

    from capml.simulate.md_check import main

    out = tmp_path / "snapshots.extxyz"
    assert main([str(pipeline_run), str(out), "--times-fs", "40", "--prefix", "p_"]) == 0
    first = read(out, ":")
    systems = sorted(p.stem for p in (pipeline_run / "md").glob("*_T*.extxyz"))
    assert [a.info["system"] for a in first] == systems  # one per trajectory
    energies = pd.read_csv(pipeline_run / "configurations" / "energies.csv").set_index("config_id")["x"]
    for atoms in first:  # positions, composition and temperature of that very frame of that trajectory
        frame, = [f for f in read_trajectory(trajectory_path(pipeline_run / "md", atoms.info["system"]))
                  if f.info["time_fs"] == 40.0]
        assert np.allclose(atoms.positions, frame.positions) and atoms.info["structure_id"].endswith("_t40fs")
        cid, temperature = atoms.info["system"].split("_T")
        assert atoms.info["x"] == energies[cid] and atoms.info["temperature"] == float(temperature.split("_")[0])
    assert main([str(pipeline_run), str(out), "--times-fs", "40", "80", "--prefix", "p_"]) == 0
    again = read(out, ":")
    assert len(again) == 2 * len(first) and [a.info["structure_id"] for a in again[:len(first)]] == \
        [a.info["structure_id"] for a in first]  # the 40 fs frames are kept, not written twice
    before = out.read_bytes()
    assert main([str(pipeline_run), str(out), "--times-fs", "41"]) == 2
    assert "has no frame at [41.0] fs" in capsys.readouterr().err and out.read_bytes() == before


def test_a_gap_model_is_compared_only_with_its_own_fidelity(trained_run, gap_dataset, mace_model_path):
    from capml.io.contract import read_dataset
    from capml.mlip.calculator import mace_calculator
    from capml.models.predict import GapPredictor
    from capml.simulate.md_check import compare

    frames = read_dataset(gap_dataset, require=())[:4]
    for k, atoms in enumerate(frames):
        atoms.info.update(system="run", time_fs=float(k))
    model = GapPredictor.from_checkpoint(trained_run["checkpoint"])  # a gap_gfn2 model
    table = compare(frames, mace_calculator(mace_model_path), model)
    assert set(table["gap_fidelity"]) == {"gfn2"}
    np.testing.assert_allclose(table["gap_ref_eV"], [a.info["gap_gfn2"] for a in frames])
    other = [a.copy() for a in frames]
    for atoms in other:
        atoms.info.pop("gap_gfn2")  # labels of another fidelity only (gap_ipea1 on some)
    table = compare(other, mace_calculator(mace_model_path), model)
    assert table["gap_ref_eV"].isna().all() and table["gap_error_eV"].isna().all()


def test_flagged_snapshots_are_the_largest_spreads_one_per_trajectory(pipeline_run, tmp_path, capsys):
    """--flagged N: from the gaps stage's series, the flagged frames (after equilibration) of largest ensemble
    spread, at most one per trajectory, taken from that very frame of that trajectory; a run without the gaps
    stage's series is refused in one line."""
    import shutil

    from ase.io import read

    from capml.simulate.md_check import main

    run = tmp_path / "run"
    for part in ("md", "configurations"):
        shutil.copytree(pipeline_run / part, run / part)
    assert main([str(run), str(tmp_path / "none.extxyz"), "--flagged", "2"]) == 2
    assert "gap_series.csv: not found" in capsys.readouterr().err
    series = pd.read_csv(pipeline_run / "gaps" / "gap_series.csv")
    series["used"] = True
    series["outside_training_data"] = False
    rng = np.random.default_rng(0)
    series["gap_std_eV"] = rng.uniform(0.0, 0.1, len(series))
    runs = list(series.groupby(["config_id", "temperature_K", "replica"]).groups.values())
    first, second = runs[0], runs[1]
    # two flagged frames in the first trajectory (only the larger counts), one in the second, one unflagged above all
    series.loc[first[3], ["outside_training_data", "gap_std_eV"]] = True, 0.5
    series.loc[first[5], ["outside_training_data", "gap_std_eV"]] = True, 0.4
    series.loc[second[4], ["outside_training_data", "gap_std_eV"]] = True, 0.3
    series.loc[runs[-1][2], "gap_std_eV"] = 0.9
    (run / "gaps").mkdir()
    series.to_csv(run / "gaps" / "gap_series.csv", index=False)
    out = tmp_path / "flagged.extxyz"
    assert main([str(run), str(out), "--flagged", "5", "--prefix", "f_"]) == 0
    picked = read(out, ":")
    assert [a.info["gap_std_eV"] for a in picked] == [0.5, 0.3]
    for atoms, row in zip(picked, (series.loc[first[3]], series.loc[second[4]])):
        frame, = [f for f in read_trajectory(trajectory_path(run / "md", atoms.info["system"]))
                  if f.info["time_fs"] == row["time_fs"]]
        assert np.allclose(atoms.positions, frame.positions) and atoms.info["structure_id"].startswith("f_")
        assert atoms.info["system"].startswith(f"{row['config_id']}_T{row['temperature_K']:g}")
