"""stage=active_learning: one tiny round end to end (relax, MD, ensemble scoring, picks, GFN2-xTB labels, a
retrained ensemble), and the pick rule against a hand count."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from capml.errors import InputError
from capml.io.contract import read_dataset
from capml.models.predict import GapPredictor
from capml.simulate.active_learning import pick_uncertain
from capml.simulate.stages import run_stage

from .conftest import simulate_config


def test_pick_uncertain_takes_the_highest_scores_spaced_in_time():
    scores = np.array([0.1, 0.9, 0.8, 0.2, 0.7, 0.95, 0.3])
    times = np.arange(7) * 10.0
    # 0.95 (t=50) first; 0.9 (t=10) is 40 fs away, fine; 0.8 (t=20) is 10 fs from t=10: skipped; 0.7 (t=40) too
    # close to t=50; 0.3 (t=60) too close to t=50; 0.2 (t=30) is 20 fs from both picks
    assert pick_uncertain(scores, times, 3, 20.0) == [1, 3, 5]
    assert pick_uncertain(scores, times, 2, 0.0) == [1, 5]
    assert pick_uncertain(scores, times, 5, 100.0) == [5]  # one frame fits in a 60 fs run


@pytest.fixture(scope="module")
def two_member_ensemble(trained_run, gap_dataset, tmp_path_factory):
    from capml.models.train import train_one
    from tests.conftest import gnn_config

    folder = tmp_path_factory.mktemp("al_ensemble")
    shutil.copy(trained_run["checkpoint"], folder / "member0.ckpt")
    other = train_one(gnn_config(gap_dataset, folder / "run1", "seed=1"))
    shutil.copy(other["checkpoint"], folder / "member1.ckpt")
    return folder


def test_one_tiny_round_labels_the_most_uncertain_snapshots_and_retrains(tmp_path, mace_model_path, gap_dataset,
                                                                        two_member_ensemble):
    train = [f"data.path={gap_dataset}", "data.target=gap_gfn2", f"data.cache_dir={tmp_path / 'graphs'}",
             "data.split_fractions=[0.6,0.2,0.2]", "trainer.max_epochs=3", "model.network.hidden=8", "logger=csv",
             "explain.graphs=0", "trainer.enable_progress_bar=false"]
    # labelled as the GFN2 fixture was (same settings: extra training labels of other settings are refused)
    overrides = ["stage=active_learning", "labels=tblite", "labels.labeller.max_iterations=250",
                 "system.supercell=[2,2,1]",
                 f"simulate.mlip_model={mace_model_path}", "simulate.configurations.max_steps=3",
                 "simulate.configurations.reference=relaxed", "simulate.md.replicas=1", "simulate.md.timestep_fs=1.0",
                 "simulate.md.dtype=float64", "simulate.md.save_every_steps=5",
                 "simulate.active_learning.x=[0,1]", "simulate.active_learning.temperature=[300]",
                 "simulate.active_learning.md_steps=40", "simulate.active_learning.discard_fs=10",
                 "simulate.active_learning.picks_per_run=2", "simulate.active_learning.min_spacing_fs=10",
                 f"simulate.active_learning.ensemble={two_member_ensemble}",
                 "simulate.active_learning.retrain.extra_train=[]", "simulate.active_learning.retrain.enabled=true", "simulate.active_learning.retrain.members=2",
                 "simulate.active_learning.retrain.overrides=[" + ",".join(f"'{o}'" for o in train) + "]"]
    record = run_stage(simulate_config(tmp_path / "al", *overrides))
    folder = tmp_path / "al" / "round0"
    assert record["relaxed_inputs"] == 2 and record["picked_snapshots"] == 4
    picked = read_dataset(folder / "picked.extxyz", require=())
    # the picks are the most uncertain frames of their run by the ensemble's own spread, recomputed here
    ensemble = GapPredictor.from_checkpoint(two_member_ensemble)
    from capml.simulate.md import read_trajectory

    for run in record["runs"]:
        frames = read_trajectory(folder / "md" / f"{run['run']}.extxyz", 10.0)
        _, spread = ensemble.predict(frames, return_std=True)
        mine = [a for a in picked if a.info["config_id"] == f"al_r0_{run['run']}"]
        assert len(mine) == 2
        times = np.array([f.info["time_fs"] for f in frames])
        expected = pick_uncertain(spread, times, 2, 10.0)
        assert [a.info["time_fs"] for a in mine] == list(times[expected])
        assert [a.info["ensemble_std_eV"] for a in mine] == pytest.approx(list(spread[expected]), rel=1e-6)
        assert all(a.info["sampling"] == "md" and a.info["temperature"] == 300.0 for a in mine)
    labelled = read_dataset(folder / "dataset.extxyz", require=())
    failed = record["labelled"]["failed"]
    assert record["labelled"]["new"] == len(labelled) == 6 - failed and len(labelled) >= 3
    assert all("gap_gfn2" in a.info for a in labelled)
    # the retrained ensemble saw the labelled round in its training split
    retrained = record["retrained"]
    assert retrained["extra_train"] == [str((folder / "dataset.extxyz").resolve())]
    assert GapPredictor.from_checkpoint(folder / "ensemble").members == 2
    assert json.loads((folder / "round.json").read_text())["retrained"]["ensemble"] == str(folder / "ensemble")
    # a rerun is a no-op: inputs kept, nothing relabelled
    before = (folder / "dataset.extxyz").read_bytes()
    again = run_stage(simulate_config(tmp_path / "al", *overrides[:-3]))
    assert again["labelled"]["new"] == 0 and (folder / "dataset.extxyz").read_bytes() == before


def test_a_single_model_cannot_score(tmp_path, mace_model_path, trained_run):
    overrides = ["stage=active_learning", f"simulate.mlip_model={mace_model_path}",
                 "system.supercell=[2,2,1]", "simulate.configurations.max_steps=2",
                 "simulate.active_learning.x=[0]", "simulate.active_learning.temperature=[300]",
                 "simulate.active_learning.md_steps=20", "simulate.active_learning.discard_fs=0",
                 f"simulate.active_learning.ensemble={trained_run['checkpoint']}", "simulate.md.dtype=float64"]
    with pytest.raises(InputError, match="needs an ensemble"):
        run_stage(simulate_config(tmp_path / "al", *overrides))
