"""The pipeline end to end on the small MACE and the test GNN: every stage's files, resume, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from capml.cli import ROOT
from capml.errors import InputError
from capml.simulate.stages import STAGES, run_stage

from .conftest import simulate_config, tiny_pipeline_overrides


def test_pipeline_writes_every_stage(pipeline_run, trained_run):
    w = pipeline_run
    table = pd.read_csv(w / "configurations" / "energies.csv")
    assert sorted(table["n_occupied"].unique()) == [0, 1, 8]
    assert len(table) == 3  # one inequivalent decoration each for 0, 1 and 8 Br of 8
    for cid in table["config_id"]:
        assert (w / "phonons" / cid / "phonopy.yaml").exists()
        assert (w / "phonons" / cid / "band_dos.png").exists()
        for t in (300, 600):
            assert (w / "md" / f"{cid}_T{t}.extxyz").exists()
            assert json.loads((w / "nmd" / f"{cid}_T{t}" / "verdict.json").read_text())["temperature_K"] == t
            modes = pd.read_csv(w / "modes" / f"{cid}_T{t}" / "modes.csv")
            assert 0 < len(modes) <= 3 * 40 - 3 and (modes["frequency_THz"].abs() > 0.05).all()
    summary = pd.read_csv(w / "gaps" / "gaps_summary.csv")
    assert len(summary) == 3 * 2
    assert summary[["lowest_gap_T_eV", "boltzmann_gap_T_eV", "lowest_delta_gap_percent"]].notna().all().all()
    # the 0 K reference by name, and Eg(0) of the static (Vegard, ideal-site) cell beside the relaxed one
    assert set(summary["reference"]) == {"relaxed"}
    from ase.io import read

    from capml.models.predict import GapPredictor
    from capml.structures.system import load_system

    relaxed = {a.info["config_id"]: a for a in read(w / "configurations" / "relaxed.extxyz", ":")}
    system = load_system("ag3sbri")
    static_cells = [system.unrelaxed(relaxed[c]) for c in summary["lowest_config"]]
    assert all(abs(s.get_volume() - relaxed[c].get_volume()) > 1e-6 for s, c in zip(static_cells, summary["lowest_config"]))
    expected = GapPredictor.from_checkpoint(trained_run["out"] / "checkpoints" / "best.ckpt").predict(static_cells)
    np.testing.assert_allclose(summary["lowest_gap_0_static_eV"], expected, atol=1e-5)
    assert (w / "gaps" / "eg_x_T.png").exists() and (w / "gaps" / "eg_map.png").exists()
    coverage = pd.read_csv(w / "gaps" / "boltzmann_coverage.csv")
    assert len(coverage) == 3 * 2 and (coverage["weight_with_md"] == 1.0).all()  # one decoration each, all run
    for cid in table["config_id"]:
        assert (w / "nmd" / f"{cid}_dispersions.png").exists()
    results = json.loads((w / "results.json").read_text())
    assert any(p.endswith("eg_x_T.png") for p in results["plots"])


def test_rerun_reuses_finished_stages(pipeline_run, mace_model_path, trained_run):
    before = (pipeline_run / "configurations" / "relaxed.extxyz").stat().st_mtime_ns
    md_before = (pipeline_run / "md" / "md_state.pt").stat().st_mtime_ns
    cfg = simulate_config(pipeline_run, "stage=md",
                          *tiny_pipeline_overrides(mace_model_path, trained_run["out"] / "checkpoints" / "best.ckpt"))
    run_stage(cfg)
    run_stage(simulate_config(pipeline_run, "stage=configurations", *tiny_pipeline_overrides(
        mace_model_path, trained_run["out"] / "checkpoints" / "best.ckpt")))
    assert (pipeline_run / "configurations" / "relaxed.extxyz").stat().st_mtime_ns == before
    assert (pipeline_run / "md" / "md_state.pt").stat().st_mtime_ns == md_before


def test_stages_registered():
    for name in ("configurations", "phonons", "md", "nmd", "gaps", "modes", "pipeline", "parents", "sample",
                 "label", "validate", "demo", "md_check"):
        assert name in STAGES


def test_missing_model_and_earlier_stage_are_input_errors(tmp_path):
    cfg = simulate_config(tmp_path, "stage=configurations", f"simulate.mlip_model={tmp_path}/none.model")
    with pytest.raises(InputError, match="simulate.mlip_model=.*none.model: MACE model file not found"):
        run_stage(cfg)
    with pytest.raises(InputError, match="configurations.*run `simulate.py stage=configurations` first"):
        run_stage(simulate_config(tmp_path, "stage=md"))


def test_command_line_bad_x_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, "simulate.py", "stage=configurations", f"workdir={tmp_path}",
                          "simulate.x=[0.3]"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: simulate.x=0.3: expected a fraction k/8")


def test_multirun_fans_out_one_job_per_point(tmp_path, mace_model_path):
    """`-m simulate.x=0,1 simulate.temperature=...`: one Hydra job per composition, each in its own folder."""
    out = subprocess.run(
        [sys.executable, "simulate.py", "-m", "stage=configurations", "simulate.x=0,1", "simulate.temperature=300",
         f"simulate.mlip_model={mace_model_path}", "simulate.configurations.max_steps=2",
         f"hydra.sweep.dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    tables = sorted(tmp_path.glob("*/configurations/energies.csv"))
    assert len(tables) == 2
    assert sorted(float(pd.read_csv(t)["x"].iloc[0]) for t in tables) == [0.0, 1.0]


def test_slurm_launcher_config_composes(tmp_path):
    from hydra import compose, initialize_config_dir

    from capml.cli import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="simulate", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.partition == "gpu" and cfg.hydra.launcher.cpus_per_task == 8


def test_gaps_stage_with_an_ensemble_and_a_model_beside(pipeline_run, mace_model_path, trained_run, gap_dataset,
                                                        tmp_path):
    """An ensemble gives model errors beside the sampling errors; the model beside adds its fidelity's columns;
    a flag threshold below every spread flags every configuration and snapshot."""
    import shutil

    import numpy as np

    from capml.models.predict import GapPredictor
    from capml.models.train import train_one
    from tests.conftest import gnn_config

    ensemble = tmp_path / "ensemble"
    ensemble.mkdir()
    shutil.copy(trained_run["checkpoint"], ensemble / "member0.ckpt")
    other = train_one(gnn_config(gap_dataset, tmp_path / "m1", "seed=1"))
    shutil.copy(other["checkpoint"], ensemble / "member1.ckpt")
    beside = train_one(gnn_config(gap_dataset, tmp_path / "ipea1", "data.target=gap_ipea1",
                                  "data.split_fractions=[0.5,0.25,0.25]"))
    workdir = tmp_path / "run"
    shutil.copytree(pipeline_run, workdir, ignore=shutil.ignore_patterns("gaps"))
    overrides = [*tiny_pipeline_overrides(mace_model_path, ensemble), f"simulate.gnn_checkpoint_beside={beside['checkpoint']}",
                 "simulate.gaps.flag_std_eV=0.0"]
    summary = run_stage(simulate_config(workdir, "stage=gaps", *overrides))
    assert {"lowest_gap_T_eV_ipea1", "lowest_delta_gap_percent_ipea1"} <= set(summary.columns)
    assert (summary["lowest_gap_T_total_err_eV"] >= summary["lowest_gap_T_err_eV"] - 1e-12).all()
    assert summary["lowest_gap_T_model_err_eV"].notna().all()
    static = pd.read_csv(workdir / "gaps" / "gaps_static.csv")
    relaxed = {a.info["config_id"]: a for a in __import__("ase.io", fromlist=["read"]).read(
        workdir / "configurations" / "relaxed.extxyz", ":")}
    mean, std = GapPredictor.from_checkpoint(ensemble).predict([relaxed[c] for c in static["config_id"]],
                                                               return_std=True)
    np.testing.assert_allclose(static["gap_0_eV"], mean, atol=1e-6)
    np.testing.assert_allclose(static["gap_0_model_err_eV"], std, atol=1e-6)
    assert static["outside_training_data"].all()
    per_config = pd.read_csv(workdir / "gaps" / "gaps_per_config.csv")
    assert (per_config["snapshots_outside_training_data"] == 1.0).all()
    assert set(per_config["error_from"]) <= {"model", "sampling"}


def test_replicas_run_in_one_batch_and_carry_the_sampling_error(pipeline_run, mace_model_path, trained_run,
                                                                tmp_path):
    """simulate.md.replicas=3: three independent trajectories per configuration and temperature (own starts and
    noise), averaged by the gaps stage with the error taken from their spread where it is the larger."""
    import shutil

    import numpy as np
    from ase.io import read

    workdir = tmp_path / "run"
    shutil.copytree(pipeline_run / "configurations", workdir / "configurations")
    overrides = [*tiny_pipeline_overrides(mace_model_path, trained_run["out"] / "checkpoints" / "best.ckpt"),
                 "simulate.x=[0,1]", "simulate.temperature=[600]", "simulate.md.replicas=3"]
    run_stage(simulate_config(workdir, "stage=md", *overrides))
    names = sorted(p.name for p in (workdir / "md").glob("*.extxyz"))
    assert len(names) == 6 and all(n.endswith(("_r0.extxyz", "_r1.extxyz", "_r2.extxyz")) for n in names)
    first = [read(workdir / "md" / n, 1) for n in names[:3]]
    assert not np.allclose(first[0].get_velocities(), first[1].get_velocities())
    run_stage(simulate_config(workdir, "stage=gaps", *overrides))
    per_config = pd.read_csv(workdir / "gaps" / "gaps_per_config.csv")
    assert (per_config["replicas"] == 3).all() and len(per_config) == 2
    expected = np.maximum(per_config["gap_T_between_err_eV"], per_config["gap_T_within_err_eV"])
    np.testing.assert_allclose(per_config["gap_T_err_eV"], expected)
    assert set(pd.read_csv(workdir / "gaps" / "gap_series.csv")["replica"]) == {0, 1, 2}
    # the renormalised phonons take every replica's frames
    shutil.copytree(pipeline_run / "phonons", workdir / "phonons")
    verdicts = run_stage(simulate_config(workdir, "stage=nmd", *overrides))
    assert sorted(verdicts) == [f"{cid}_T600" for cid in ("k0of8_d0", "k8of8_d0")]
    assert (workdir / "nmd" / "k0of8_d0_dispersions.png").exists()
    langevin = pd.read_csv(workdir / "nmd" / "k0of8_d0_T600" / "modes.csv")
    assert np.allclose(langevin["thermostat_fwhm_THz"], 5.0 / (2 * np.pi))  # conf/simulate/md.yaml friction
    # NVE segments from every replica's last state, in one batch, thermostat-free spectra
    verdicts = run_stage(simulate_config(workdir, "stage=nmd", *overrides, "simulate.nmd.nve_fs=40",
                                         "simulate.nmd.nve_save_every_steps=2"))
    assert sorted(verdicts) == [f"{cid}_T600" for cid in ("k0of8_d0", "k8of8_d0")]
    assert sorted(p.name for p in (workdir / "nmd" / "nve").glob("*.extxyz")) == names
    nve = pd.read_csv(workdir / "nmd" / "k0of8_d0_T600" / "modes.csv")
    assert (nve["thermostat_fwhm_THz"] == 0).all() and "resolution_THz" in nve


def test_eg_map_experiment_covers_every_composition_and_temperature(tmp_path):
    from capml.simulate.run import SimulationRun

    cfg = simulate_config(tmp_path, "experiment=eg_map")
    run = SimulationRun.from_config(cfg)
    assert cfg.stage == "pipeline" and run.compositions == list(range(9))  # all k/8 of the 2x2x2 cell
    assert run.temperatures_K == [200.0, 300.0, 400.0, 600.0]  # the paper's
    assert cfg.simulate.md.replicas == 2 and cfg.simulate.gaps.discard_fs == "auto"
    # the static Vegard cells as 0 K reference (the default protocol), 2 fs steps (bench/bench_timestep.py), float32
    assert cfg.simulate.configurations.reference == "static" and run.gap_dtype == "float32"
    # the default protocol's MD: the map and the demo answer with the same run length
    demo = simulate_config(tmp_path).simulate.md
    assert cfg.simulate.md.timestep_fs * cfg.simulate.md.n_steps == demo.timestep_fs * demo.n_steps == 2000.0
    assert cfg.simulate.md.timestep_fs * cfg.simulate.md.save_every_steps == 10.0  # fs between frames


def test_paper_experiment_runs_tiny_from_the_static_vegard_cells(tmp_path, mace_model_path, trained_run):
    """experiment=paper, shrunk: the static (ideal-site, Vegard-cell) reference for every composition, NVT at that
    cell, and a fixed count of evenly spaced snapshots from the end of each run."""
    from ase.io import read

    from capml.structures.system import load_system

    gnn = trained_run["out"] / "checkpoints" / "best.ckpt"
    overrides = ["experiment=paper", *tiny_pipeline_overrides(mace_model_path, gnn), "simulate.x=[0,1]",
                 "simulate.temperature=[300]", "simulate.md.replicas=1", "simulate.md.n_steps=60",
                 "simulate.md.save_every_steps=2", "simulate.gaps.discard_fs=20", "simulate.nmd.discard_fs=20",
                 "simulate.gaps.snapshots=5", "simulate.configurations.reference=static"]
    cfg = simulate_config(tmp_path, *overrides)
    assert cfg.simulate.configurations.reference == "static" and cfg.simulate.md.friction_per_ps == 5.0
    run_stage(cfg)
    system = load_system("ag3sbri")
    summary = pd.read_csv(tmp_path / "gaps" / "gaps_summary.csv")
    assert set(summary["reference"]) == {"static"}
    np.testing.assert_allclose(summary["lowest_gap_0_eV"], summary["lowest_gap_0_static_eV"], atol=1e-6)
    per_config = pd.read_csv(tmp_path / "gaps" / "gaps_per_config.csv")
    assert (per_config["n_snapshots"] == 5).all()
    for cid, species in (("k0of8_d0", "I"), ("k8of8_d0", "Br")):
        frames = read(tmp_path / "md" / f"{cid}_T300.extxyz", ":")
        ideal = system.end_member(species)
        np.testing.assert_allclose(frames[-1].cell[:], ideal.cell[:], atol=1e-6)  # NVT at the Vegard cell
        assert frames[-1].get_volume() == pytest.approx((2 * system.lattice_constants[species]) ** 3, rel=1e-9)
