"""Every conf/experiment/*.yaml, composed on the primary config its program gives it and run small, as
lightning-hydra-template tests its experiments: a GNN experiment with `debug=fdr` on the tblite test set, a MACE
experiment (one that configures `mlip`, composed on conf/train_mlip.yaml) with `debug=mlip` on the same set, and a
simulate.py experiment (one that sets `stage`) as far as its plan: the compositions and temperatures it would run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from capml.cli import CONFIG_DIR, train_config
from capml.entry_points import run_training
from capml.io.extxyz import read_structures
from capml.models.predict import GapPredictor

EXPERIMENTS = sorted((CONFIG_DIR / "experiment").glob("*.yaml"))

# what a small run of an experiment needs beside the debug settings: the test set's fidelities and files
SMALL = {
    "cv": ["cv.datasets=[{data}]", "cv.folds=2", "cv.seeds=[0]"],
    "two_stage": ["two_stage.cheap=gap_gfn2", "two_stage.accurate=gap_ipea1"],
    "two_stage_frozen": ["two_stage.cheap=gap_gfn2", "two_stage.accurate=gap_ipea1"],
}
# the files an experiment writes beside each stage's metrics.json
WRITES = {"cv": ["cv_metrics.json", "cv_predictions.csv"], "two_stage": ["two_stage.csv"],
          "two_stage_frozen": ["two_stage.csv"]}


def program(path: Path) -> str:
    """The primary config an experiment file is composed on, as simulate.py and train.py choose it."""
    return "simulate" if "stage" in OmegaConf.load(path) else train_config([f"experiment={path.stem}"])[0]


def composed(path: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=program(path), overrides=[f"experiment={path.stem}", *overrides])


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> Path:
    """One graph cache for every GNN experiment here."""
    return tmp_path_factory.mktemp("graphs")


def test_train_py_picks_the_primary_config():
    assert train_config(["experiment=mlip_base", "mlip.epochs=1"]) == (
        "train_mlip", ["--config-name", "train_mlip", "experiment=mlip_base", "mlip.epochs=1"])
    assert train_config(["experiment=[cv,two_stage]"]) == ("train", ["experiment=[cv,two_stage]"])
    assert train_config(["-cn", "train_mlip", "mlip.epochs=1"])[0] == "train_mlip"
    assert train_config(["task=mlip", "mlip.epochs=1"]) == ("train_mlip", ["--config-name", "train_mlip",
                                                                           "mlip.epochs=1"])
    assert train_config(["task=gnn"]) == ("train", [])
    with pytest.raises(SystemExit):
        train_config(["task=phonons"])


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_runs(path, gap_dataset, graphs, tmp_path):
    out = tmp_path / "run"
    name = program(path)
    if name == "simulate":
        plan_simulation(path)
    elif name == "train_mlip":
        run_mlip(path, gap_dataset, out)
    else:
        assert name == "train"
        run_gnn(path, gap_dataset, graphs, out)


def run_gnn(path: Path, data: Path, graphs: Path, out: Path) -> None:
    small = [o.format(data=data) for o in SMALL.get(path.stem, [])]
    cfg = composed(path, "debug=fdr", f"data.path={data}", "data.target=gap_gfn2", f"data.cache_dir={graphs}",
                   "data.group_key=structure_id", "data.split_fractions=[0.5,0.25,0.25]", "model.network.hidden=8",
                   "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", f"paths.output_dir={out}",
                   *small)
    assert "mlip" not in cfg and cfg.trainer.fast_dev_run and cfg.export_checkpoint is None
    assert np.isfinite(run_training(cfg))
    for name in WRITES.get(path.stem, []):
        assert (out / name).is_file(), name
    metrics = [json.loads(p.read_text()) for p in sorted(out.rglob("metrics.json"))]
    assert metrics and all(np.isfinite(m["val"]["mae"]) for m in metrics)
    frames = read_structures(data)[:2]
    assert np.isfinite(GapPredictor.from_checkpoint(metrics[-1]["checkpoint"]).predict(frames)).all()
    if path.stem.startswith("two_stage"):
        table = pd.read_csv(out / "two_stage.csv")
        assert set(table["run"]) == {"pretrain", "finetune", "scratch"}
        assert set(table.loc[table["run"] != "pretrain", "target"]) == {"gap_ipea1"}


def run_mlip(path: Path, data: Path, out: Path) -> None:
    cfg = composed(path, "debug=mlip", f"mlip.dataset={data}", f"mlip.out_dir={out}", f"paths.output_dir={out}")
    assert "model" not in cfg and cfg.mlip.export_model is None
    foundation = OmegaConf.to_container(cfg.mlip, resolve=True)["foundation_model"]
    summary = run_training(cfg)
    assert sum(summary["counts"].values()) == cfg.mlip.max_frames and summary["exported_model"] is None
    assert Path(summary["model"]).is_file() and summary["foundation_model"] == foundation
    assert np.isfinite(summary["metrics"]["test"]["trained"]["forces"]["mae"])


def plan_simulation(path: Path) -> None:
    """The run an experiment of simulate.py sets up (SimulationRun: every stage's shared state), not run here."""
    from capml.simulate.run import SimulationRun

    cfg = composed(path)
    assert cfg.stage == "pipeline" and Path(cfg.workdir) == Path("runs") / path.stem
    OmegaConf.to_container(cfg.simulate, resolve=True)
    run = SimulationRun.from_config(cfg)
    if cfg.simulate.x == "all":
        assert len(run.compositions) == run.system.n_sites + 1
    assert run.temperatures_K == [float(t) for t in cfg.simulate.temperature]
    assert run.md_replicas == cfg.simulate.md.replicas
