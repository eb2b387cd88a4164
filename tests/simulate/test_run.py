"""SimulationRun: the simulate stages from Python, without Hydra, agree with the composed-config path."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from capml.errors import InputError
from capml.simulate.pipeline import GapSettings, PipelineSettings, gaps
from capml.simulate.run import MDRun, SimulationRun
from capml.structures.system import load_system

from .conftest import simulate_config, tiny_pipeline_overrides


def test_run_from_python_reproduces_the_config_path(pipeline_run, mace_model_path, trained_run, tmp_path):
    checkpoint = trained_run["out"] / "checkpoints" / "best.ckpt"
    workdir = tmp_path / "run"
    shutil.copytree(pipeline_run, workdir)
    shutil.rmtree(workdir / "gaps")
    run = SimulationRun(workdir, load_system("ag3sbri"), x=[0, 0.125, 1], temperatures_K=[300, 600],
                        mlip_model=str(mace_model_path), gnn_checkpoint=str(checkpoint),
                        md_configurations_per_composition=2)
    # the same plan as the composed config of the pipeline fixture
    composed = SimulationRun.from_config(simulate_config(workdir, *tiny_pipeline_overrides(mace_model_path, checkpoint)))
    assert run.md_runs() == composed.md_runs() and run.compositions == composed.compositions == [0, 1, 8]
    # every planned trajectory is the file the md stage wrote, and nothing else is
    assert sorted(f"{r.name}.extxyz" for r in run.md_runs()) == sorted(p.name for p in (workdir / "md").glob("*.extxyz"))
    # shared state is read once and dropped on request
    assert run.relaxed() is run.relaxed() and run.table() is run.table()
    first = run.table()
    run.forget("table")
    assert run.table() is not first and run.table().equals(first)
    summary = gaps(run, PipelineSettings(gaps=GapSettings(discard_fs=0)))
    expected = pd.read_csv(pipeline_run / "gaps" / "gaps_summary.csv")
    assert len(summary) == len(expected) == 6
    np.testing.assert_allclose(summary["lowest_gap_T_eV"], expected["lowest_gap_T_eV"], rtol=0, atol=1e-12)


def test_run_names_replicas_and_refuses_bad_plans(tmp_path):
    system = load_system("ag3sbri")
    with pytest.raises(InputError, match="simulate.temperature"):
        SimulationRun(tmp_path, system, x=[0], temperatures_K=[300, -5])
    with pytest.raises(InputError, match="simulate.md.replicas"):
        SimulationRun(tmp_path, system, x=[0], temperatures_K=[300], md_replicas=0)
    run = SimulationRun(tmp_path, system, x="all", temperatures_K=300, md_replicas=2)
    assert run.compositions == list(range(9)) and run.temperatures_K == [300.0]
    assert run.point("k0of8_d0", 300.0) == "k0of8_d0_T300"
    with pytest.raises(InputError, match="stage=configurations"):
        run.md_runs()  # nothing relaxed yet: the message names the stage to run
    with pytest.raises(InputError, match="simulate.gnn_checkpoint: not set"):
        run.gap_model()


def test_md_run_from_its_trajectory_name_inverts_the_planned_names(tmp_path):
    """The name a trajectory file carries gives back its run, whatever the configuration id contains (the
    md_check and protocol-table tools read runs from file names)."""
    system = load_system("ag3sbri")
    for replicas in (1, 3):
        run = SimulationRun(tmp_path, system, x=[0], temperatures_K=[300, 612.5], md_replicas=replicas)
        planned = [MDRun(cid, t, k, run.point(cid, t) + ("" if replicas == 1 else f"_r{k}"))
                   for t in (300.0, 612.5) for cid in ("k0of8_d0", "static_paper_Ag3SI", "k4of8_d12")
                   for k in range(replicas)]
        assert [MDRun.from_name(r.name) for r in planned] == planned
    with pytest.raises(InputError, match="k0of8_d0_300.*<config>_T<temperature>"):
        MDRun.from_name("k0of8_d0_300")
