"""train.py end to end: one run through the command line, determinism, two-stage training, every config
group, sweeps through the submitit launcher (ranked), and one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.cli_runner import run_cli
import torch
import yaml

from capml.cli import CONFIG_DIR, ROOT
from capml.io.contract import write_dataset
from capml.io.paths import resolve_path
from capml.models.module import GraphRegressor
from capml.models.predict import GapPredictor
from capml.models.train import train_one
from capml.models.workflow import run
from tests.conftest import gnn_config

TINY = ["data.target=gap_gfn2", "data.split_fractions=[0.6,0.2,0.2]", "data.batch_size=4", "model.network.hidden=8",
        "trainer.max_epochs=3", "trainer.enable_progress_bar=false", "explain.graphs=2", "explain.epochs=5"]


def train_cli(*args, cwd=ROOT):
    return run_cli("train.py", *args, cwd=cwd, env={"WANDB_SILENT": "true"}, timeout=300)


def test_command_line_run_writes_metrics_plots_checkpoint_and_offline_wandb(gap_dataset, tmp_path):
    result = train_cli(f"data.path={gap_dataset}", f"data.cache_dir={tmp_path / 'graphs'}", f"paths.log_dir={tmp_path}",
                       "run_name=cli", f"export_checkpoint={tmp_path / 'exported.ckpt'}", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    (out,) = (tmp_path / "cli").iterdir()
    assert (tmp_path / "exported.ckpt").read_bytes() == (out / "checkpoints" / "best.ckpt").read_bytes()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["target"] == "gap_gfn2" and {"val", "test"} <= set(metrics)
    assert (out / "parity.png").exists() and (out / "edge_importance.csv").exists()
    resolved = yaml.safe_load((out / "train.config.yaml").read_text())
    # the record names a file of the checkout portably (capml.io.records.resolved_record)
    assert resolve_path(resolved["data"]["path"]).resolve() == Path(gap_dataset).resolve() and "mlip" not in resolved
    (wandb_log,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    records = wandb_log.read_bytes()  # the offline run's protobuf records hold the resolved config as JSON
    assert b'"network":{"_target_":"capml.models.networks.PaperGraphConv","hidden":8' in records
    assert str(gap_dataset).encode() in records
    assert GapPredictor.from_checkpoint(metrics["checkpoint"]).predict([]).shape == (0,)


def test_same_seed_same_model(gap_dataset, tmp_path):
    first = train_one(gnn_config(gap_dataset, tmp_path / "a", "trainer.max_epochs=3"))
    second = train_one(gnn_config(gap_dataset, tmp_path / "b", "trainer.max_epochs=3"))
    assert first["val"] == second["val"] and first["test"] == second["test"]
    weights = [torch.load(m["checkpoint"], weights_only=False)["state_dict"] for m in (first, second)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_extra_train_frames_reach_the_predictions_table(gap_dataset, tmp_path):
    from capml.io.contract import read_dataset, read_settings

    extra = [a.copy() for a in read_dataset(gap_dataset, require=())[:3]]
    for k, atoms in enumerate(extra):
        atoms.info["structure_id"] = f"md_{k}"
    write_dataset(tmp_path / "md.extxyz", extra, read_settings(gap_dataset))
    metrics = train_one(gnn_config(gap_dataset, tmp_path / "run", "trainer.max_epochs=2",
                                   f"data.extra_train=[{tmp_path / 'md.extxyz'}]"))
    assert metrics["extra_train"] == 3
    table = pd.read_csv(tmp_path / "run" / "predictions.csv")
    train_ids = table.loc[table["split"] == "train", "structure_id"].tolist()
    assert train_ids[-3:] == ["md_0", "md_1", "md_2"] and len(train_ids) == metrics["frames"]["train"] + 3


@pytest.mark.parametrize("experiment", ["two_stage", "two_stage_frozen"])
def test_two_stage_training(gap_dataset, tmp_path, experiment):
    out = tmp_path / experiment
    # two_stage: the default (pretraining leaves out what the accurate stage holds out); frozen: fully disjoint
    disjoint = "held_out" if experiment == "two_stage" else "true"
    cfg = gnn_config(gap_dataset, out, f"experiment={experiment}", "two_stage.cheap=gap_gfn2",
                     "two_stage.accurate=gap_ipea1", "data.group_key=structure_id", "trainer.max_epochs=4",
                     "data.split_fractions=[0.5,0.25,0.25]", f"two_stage.disjoint={disjoint}")
    run(cfg)
    table = pd.read_csv(out / "two_stage.csv")
    assert set(table["run"]) == {"pretrain", "finetune", "scratch"}
    assert set(table[table["run"] != "pretrain"]["target"]) == {"gap_ipea1"}
    assert (out / "two_stage.png").exists()
    metrics = {s: json.loads((out / s / "metrics.json").read_text()) for s in ("pretrain", "finetune", "scratch")}
    assert metrics["finetune"]["dropped_without_target"] == 12
    pretrained = set(pd.read_csv(out / "pretrain" / "predictions.csv")["structure_id"])
    finetuned = pd.read_csv(out / "finetune" / "predictions.csv")
    held_out = set(finetuned.loc[finetuned["split"] != "train", "structure_id"])
    assert held_out and not held_out & pretrained  # never pretrained on what the fine-tuned model is judged on
    if disjoint == "true":  # disjoint stages: pretraining sees only the 12 frames without the accurate label
        assert sum(metrics["pretrain"]["frames"].values()) == 12 and metrics["pretrain"]["dropped_without_target"] == 6
    else:  # all 18 frames but the accurate stage's validation and test structures
        assert len(pretrained) == 18 - len(held_out) and set(finetuned["structure_id"]) - held_out <= pretrained
    pretrain, finetune = (GraphRegressor.load_from_checkpoint(metrics[s]["checkpoint"]) for s in ("pretrain", "finetune"))
    same_encoder = all(torch.equal(a, b) for a, b in zip(pretrain.network.encoder.state_dict().values(),
                                                         finetune.network.encoder.state_dict().values()))
    if experiment == "two_stage_frozen":
        assert same_encoder and finetune.hparams.target_scaler == pretrain.hparams.target_scaler
    else:
        assert not same_encoder and finetune.hparams.target_scaler != pretrain.hparams.target_scaler
    assert finetune.hparams.feature_scaler == pretrain.hparams.feature_scaler


def test_two_stage_pretrains_on_another_file(gap_dataset, tmp_path):
    """two_stage.cheap_path: stage 1 reads its own file of other structures, fine-tune and scratch the main one."""
    import ase.io

    cheap = tmp_path / "cheap.extxyz"
    frames = ase.io.read(gap_dataset, ":")
    write_dataset(cheap, frames[:10])
    out = tmp_path / "gfn2"
    cfg = gnn_config(gap_dataset, out, "experiment=two_stage", f"two_stage.cheap_path={cheap}", "two_stage.cheap=gap_gfn2",
                     "two_stage.accurate=gap_ipea1", "data.group_key=structure_id", "trainer.max_epochs=3",
                     "data.split_fractions=[0.5,0.25,0.25]")
    run(cfg)
    metrics = {s: json.loads((out / s / "metrics.json").read_text()) for s in ("pretrain", "finetune", "scratch")}
    assert metrics["pretrain"]["target"] == "gap_gfn2" and sum(metrics["pretrain"]["frames"].values()) == 10
    n_accurate = sum("gap_ipea1" in f.info for f in frames)
    for stage in ("finetune", "scratch"):
        assert metrics[stage]["target"] == "gap_ipea1" and sum(metrics[stage]["frames"].values()) == n_accurate


@pytest.mark.parametrize("model", ["paper", "cgcnn", "gatv2"])
@pytest.mark.parametrize("target", ["gap_gfn2", "energy_per_atom", "hydrostatic_stress"])
def test_models_and_targets_fast_dev_run(gap_dataset, tmp_path, model, target):
    metrics = train_one(gnn_config(gap_dataset, tmp_path, f"model={model}", f"data.target={target}",
                                   "trainer.fast_dev_run=true", "model.loss=l1"))
    assert metrics["target"] == target and np.isfinite(metrics["val"]["mae"])


@pytest.mark.parametrize("overrides", [["hparams_search=paper_grid"], ["hparams_search=optuna"],
                                       ["hydra/launcher=local"], ["hydra/launcher=slurm"], ["trainer=ddp"],
                                       ["logger=wandb_csv"], ["experiment=two_stage"], ["model/scheduler=cosine"],
                                       ["debug=limit"], ["debug=overfit"], ["debug=profiler"]])
def test_configs_compose(overrides):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    assert "model" in cfg and "mlip" not in cfg


def test_sweep_with_submitit_local_launcher_is_ranked(gap_dataset, tmp_path):
    result = train_cli("-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", "model=paper,gatv2",
                       f"data.path={gap_dataset}", f"data.cache_dir={tmp_path / 'graphs'}", f"paths.log_dir={tmp_path}",
                       "logger=csv", "explain.graphs=0", *TINY[:-2])
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "multiruns").iterdir()
    ranking = pd.read_csv(sweep / "sweep_ranking.csv")
    assert sorted(ranking["model"]) == ["gatv2", "paper"]
    assert ranking["val/mae"].is_monotonic_increasing
    assert list((sweep / ".submitit").glob("*/*_result.pkl"))


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    result = train_cli(f"data.path={tmp_path / 'missing.extxyz'}", "logger=csv", f"paths.log_dir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'missing.extxyz'}: dataset file not found " \
                                                     "(expected a capml extxyz dataset)"
    result = train_cli("model=nosuchmodel")
    assert result.returncode == 2 and "nosuchmodel" in result.stderr and "Traceback" not in result.stderr


def test_element_without_features_is_one_line_and_no_cache(tmp_path):
    """An element the feature table does not know (He: no Pauling electronegativity), through train.py."""
    from ase import Atoms

    frames = []
    for i in range(6):
        atoms = Atoms("AgHe", positions=[[0, 0, 0], [2.0 + 0.1 * i, 0, 0]], cell=np.eye(3) * 6, pbc=True)
        atoms.info.update(REF_energy=-1.0, REF_stress=np.zeros((3, 3)), structure_id=f"s{i}", config_id=f"c{i}",
                          gap_pbesol=0.5)
        atoms.arrays["REF_forces"] = np.zeros((2, 3))
        frames.append(atoms)
    data = tmp_path / "helium.extxyz"
    write_dataset(data, frames)
    cache = tmp_path / "graphs"
    result = train_cli(f"data.path={data}", f"data.cache_dir={cache}", "logger=csv", f"paths.log_dir={tmp_path}")
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(data) in last and "He" in last and "Traceback" not in result.stderr
    assert not list(cache.glob("**/*.pt"))  # no partial graph cache left behind


@pytest.mark.slow
def test_two_stage_on_the_bundled_dataset(tmp_path):
    """The done-when run: `python train.py experiment=two_stage` on data/ag3sbri (short epochs)."""
    from capml.io.contract import read_dataset

    bundled = ROOT / "data" / "ag3sbri" / "dataset.extxyz"
    if not bundled.exists() or sum("gap_hse06" in a.info for a in read_dataset(bundled, require=())) < 20:
        pytest.skip("the bundled dataset has fewer than 20 frames with gap_hse06 so far")
    result = train_cli("experiment=two_stage", f"paths.log_dir={tmp_path}", f"data.cache_dir={tmp_path / 'graphs'}",
                       "trainer.max_epochs=30", "trainer.enable_progress_bar=false")
    assert result.returncode == 0, result.stderr[-3000:]
    (out,) = (tmp_path / "two_stage_paper").iterdir()
    table = pd.read_csv(out / "two_stage.csv")
    assert set(table["run"]) == {"pretrain", "finetune", "scratch"} and (out / "two_stage.png").exists()
    checkpoint = json.loads((out / "finetune" / "metrics.json").read_text())["checkpoint"]
    frames = read_dataset(bundled, require=())[:5]
    gaps = GapPredictor.from_checkpoint(checkpoint).predict(frames)
    assert gaps.shape == (5,) and np.all(np.isfinite(gaps))


def test_two_stage_summary_over_a_multirun(tmp_path):
    """summarise_two_stage pairs fine-tuned and scratch per job; rank_sweep finds a job's overrides above its
    stage folders."""
    from capml.models.report import rank_sweep, summarise_two_stage

    test_mae = {0: (0.10, 0.20), 1: (0.30, 0.20), 2: (0.05, 0.15)}  # job: (fine-tuned, scratch)
    for job, (fine, scratch) in test_mae.items():
        folder = tmp_path / str(job)
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text(f"- seed={job}\n")
        rows = [("finetune", split, fine) for split in ("val", "test")] + [("scratch", split, scratch)
                                                                          for split in ("val", "test")]
        pd.DataFrame([{"run": r, "target": "gap_hse06", "split": s, "n_train": 10, "n": 3, "mae": m, "rmse": m,
                       "r2": 1 - m} for r, s, m in rows + [("pretrain", "test", 0.01)]]).to_csv(
            folder / "two_stage.csv", index=False)
        for stage, mae in (("finetune", fine), ("scratch", scratch)):
            (folder / stage).mkdir()
            (folder / stage / "metrics.json").write_text(json.dumps({"val": {"mae": mae}, "test": {"mae": mae}}))
    summary = summarise_two_stage(tmp_path).set_index(["split", "metric"])
    row = summary.loc[("test", "mae")]
    assert row["jobs"] == 3 and row["finetune_mean"] == pytest.approx(0.15) and row["scratch_mean"] == pytest.approx(0.55 / 3)
    assert row["mean_difference"] == pytest.approx((-0.10 + 0.10 - 0.10) / 3)
    assert row["finetune_better"] == pytest.approx(2 / 3)
    assert summary.loc[("test", "r2"), "finetune_better"] == pytest.approx(2 / 3)
    assert (tmp_path / "two_stage_summary.png").exists()
    ranking = rank_sweep(tmp_path)
    assert ranking.iloc[0]["job"] == "2/finetune" and str(ranking.iloc[0]["seed"]) == "2" and len(ranking) == 6


def test_killed_training_resumes_to_the_same_model(gap_dataset, tmp_path):
    """kill -9 a `train.py` run after its third epoch, rerun the same command into the same folder: it resumes
    from last.ckpt and ends with the metrics of a run that was never stopped (same shuffles, same random state)."""
    import signal
    import time

    args = [f"data.path={gap_dataset}", f"data.cache_dir={tmp_path / 'graphs'}", "logger=csv", *TINY,
            "trainer.max_epochs=12", "explain.graphs=0"]
    straight = train_cli(*args, f"hydra.run.dir={tmp_path / 'straight'}")
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args, f"hydra.run.dir={killed}"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last, saves, stamp = killed / "checkpoints" / "last.ckpt", 0, None
    deadline = time.time() + 240
    while proc.poll() is None and time.time() < deadline:
        if last.exists() and last.stat().st_mtime_ns != stamp:
            stamp, saves = last.stat().st_mtime_ns, saves + 1
            if saves == 3:
                proc.send_signal(signal.SIGKILL)
                break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert torch.load(last, weights_only=False)["epoch"] < 11
    resumed = train_cli(*args, f"hydra.run.dir={killed}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    assert a["val"] == b["val"] and a["train"] == b["train"]
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    # the same folder with another config is another run: refused, nothing touched
    other = train_cli(*[a for a in args if not a.startswith("data.batch_size")], "data.batch_size=2",
                      f"hydra.run.dir={killed}")
    assert other.returncode == 2 and "another config" in other.stderr and "data" in other.stderr
