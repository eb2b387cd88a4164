"""Ensembles, corrections and the band-edge readout: an ensemble's mean and spread are those of its members
loaded one by one; a correction model adds its base member by member; grouped k-fold CV holds out whole groups."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from capml.errors import InputError
from capml.io.contract import read_dataset
from capml.models.predict import GapPredictor
from capml.models.workflow import run
from tests.conftest import gnn_config


@pytest.fixture(scope="module")
def ensemble_dir(gap_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("ensemble")
    cfg = gnn_config(gap_dataset, out / "train", "ensemble.members=3", f"ensemble.export_dir={out / 'gfn2'}",
                     "trainer.max_epochs=4", "ensemble.flag_std_eV=0.2")
    run(cfg)
    return out


def test_ensemble_mean_and_spread_are_those_of_the_members(ensemble_dir, gap_dataset):
    frames = read_dataset(gap_dataset, require=())[:9]
    folder = ensemble_dir / "gfn2"
    card = json.loads((folder / "ensemble.json").read_text())
    assert card["members"] == 3 and card["target"] == "gap_gfn2" and card["flag_std_eV"] == 0.2
    assert [m["seed"] for m in card["per_member"]] == [0, 1, 2]  # each member its own split and weights
    single = np.array([GapPredictor.from_checkpoint(folder / f"member{k}.ckpt").predict(frames) for k in range(3)])
    model = GapPredictor.from_checkpoint(folder, batch_size=4)
    mean, std = model.predict(frames, return_std=True)
    assert model.members == 3 and model.fidelity == "gfn2"
    np.testing.assert_allclose(mean, single.mean(0), atol=1e-6)
    np.testing.assert_allclose(std, single.std(0, ddof=1), atol=1e-6)
    assert (std > 0).all()
    _, alone = GapPredictor.from_checkpoint(folder / "member0.ckpt").predict(frames, return_std=True)
    assert np.isnan(alone).all()  # one model: no spread to report


def test_members_must_agree_and_empty_folders_are_refused(ensemble_dir, gap_dataset, tmp_path):
    with pytest.raises(InputError, match="no \\*.ckpt"):
        GapPredictor.from_checkpoint(tmp_path)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(ensemble_dir / "gfn2" / "member0.ckpt", mixed / "a.ckpt")
    checkpoint = torch.load(ensemble_dir / "gfn2" / "member1.ckpt", weights_only=False)
    checkpoint["hyper_parameters"]["target"] = "gap_ipea1"
    torch.save(checkpoint, mixed / "b.ckpt")
    with pytest.raises(InputError, match="member 1 has target=gap_ipea1"):
        GapPredictor.from_checkpoint(mixed)


def test_correction_model_adds_its_base_member_by_member(ensemble_dir, gap_dataset):
    out = ensemble_dir
    cfg = gnn_config(gap_dataset, out / "train_delta", "data.target=gap_ipea1_minus_gap_gfn2", "ensemble.members=3",
                     f"ensemble.export_dir={out / 'ipea1'}", "ensemble.correction_to=../gfn2", "trainer.max_epochs=4",
                     "data.split_fractions=[0.5,0.25,0.25]", "model.head=linear")
    run(cfg)
    frames = read_dataset(gap_dataset, require=())[:6]
    model = GapPredictor.from_checkpoint(out / "ipea1")
    assert model.target == "gap_ipea1" and model.fidelity == "ipea1"
    base = GapPredictor.from_checkpoint(out / "gfn2").predict_members(frames)
    delta = np.array([GapPredictor.from_checkpoint(out / "ipea1" / f"member{k}.ckpt").predict(frames)
                      for k in range(3)])
    np.testing.assert_allclose(model.predict_members(frames), base + delta, atol=1e-6)


def test_band_edge_readout_is_a_smooth_max_and_min_and_never_negative():
    from capml.models.networks import BandEdgeReadout, segment_logsumexp

    values = torch.tensor([0.1, 0.5, -0.2, 3.0, 2.0])
    batch = torch.tensor([0, 0, 0, 1, 1])
    expected = torch.stack([torch.logsumexp(values[:3], 0), torch.logsumexp(values[3:], 0)])
    torch.testing.assert_close(segment_logsumexp(values, batch), expected)
    readout = BandEdgeReadout(hidden=4, readout_hidden=3, dropout=0.0, tau=0.01).eval()
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        scores = readout.scores(x)
        gap = readout(x, batch)
    vbm = torch.stack([scores[:3, 0].max(), scores[3:, 0].max()])
    cbm = torch.stack([scores[:3, 1].min(), scores[3:, 1].min()])
    assert (gap >= 0).all()
    # at a small tau the smooth edges are the hard ones (within tau log n)
    torch.testing.assert_close(gap, torch.nn.functional.softplus(cbm - vbm), atol=0.03, rtol=0)


def test_band_edge_model_trains_with_its_gap_head(gap_dataset, tmp_path):
    from capml.models.train import train_one

    metrics = train_one(gnn_config(gap_dataset, tmp_path / "be", "model=band_edges", "trainer.max_epochs=3",
                                   "model.network.hidden=16"))
    predictions = GapPredictor.from_checkpoint(metrics["checkpoint"]).predict(read_dataset(gap_dataset, require=()))
    assert np.isfinite(predictions).all() and (predictions >= 0).all()


def test_grouped_folds_hold_out_whole_groups_and_cover_every_frame():
    from ase import Atoms

    from capml.io.split import grouped_folds

    frames = [Atoms(info={"config_id": f"c{i % 7}"}) for i in range(40)]
    fold = grouped_folds(frames, 3, seed=1)
    assert set(fold) == {0, 1, 2}
    for group in {a.info["config_id"] for a in frames}:
        assert len({f for f, a in zip(fold, frames) if a.info["config_id"] == group}) == 1
    counts = np.bincount(fold)
    assert counts.max() - counts.min() <= 6  # groups of 5-6 frames dealt to the emptiest fold
    assert not np.array_equal(fold, grouped_folds(frames, 3, seed=2))
    with pytest.raises(InputError, match="cannot fill 8 folds"):
        grouped_folds(frames, 8)


def test_cross_validation_predicts_every_labelled_frame_once_per_seed(gap_dataset, tmp_path):
    cfg = gnn_config(gap_dataset, tmp_path / "cv", "experiment=cv", "cv.folds=3", "cv.seeds=[0,1]", "cv.members=2",
                     f"cv.datasets=[{gap_dataset}]", "trainer.max_epochs=3", "data.split_fractions=[0.7,0.3,0.0]")
    run(cfg)
    out = tmp_path / "cv"
    predictions = pd.read_csv(out / "cv_predictions.csv")
    frames = read_dataset(gap_dataset, require=())
    assert len(predictions) == 2 * len(frames)
    for _, part in predictions.groupby("seed"):
        assert sorted(part["structure_id"]) == sorted(str(a.info["structure_id"]) for a in frames)
        # a group is held out in one fold only
        assert (part.groupby("group")["fold"].nunique() == 1).all()
    reference = {str(a.info["structure_id"]): a.info["gap_gfn2"] for a in frames}
    np.testing.assert_allclose(predictions["y_true"], predictions["structure_id"].map(reference), atol=1e-9)
    metrics = json.loads((out / "cv_metrics.json").read_text())
    overall = metrics["overall"]
    per_seed = [np.mean(np.abs(p["y_pred"] - p["y_true"])) for _, p in predictions.groupby("seed")]
    assert overall["mae_mean"] == pytest.approx(np.mean(per_seed))
    assert 0 <= overall["within_1std_mean"] <= overall["within_2std_mean"] <= 1
    assert (out / "cv.png").exists() and (out / "cv_breakdown.csv").exists()


def test_calibration_scale_against_a_known_error_distribution(ensemble_dir, gap_dataset):
    from capml.models.cv import calibration

    rng = np.random.default_rng(0)
    std = rng.uniform(0.05, 0.2, 20000)
    error = rng.normal(0.0, 2.0 * std)  # the spread is too small by exactly 2
    result = calibration(pd.DataFrame({"y_std": std, "error": error}))
    assert result["std_scale"] == pytest.approx(2.0, rel=0.03)
    assert result["within_1std_raw"] == pytest.approx(0.383, abs=0.01)  # P(|z| < 1/2) for a normal z
    assert result["within_1std_scaled"] == pytest.approx(0.683, abs=0.01)
    assert result["within_2std_scaled"] == pytest.approx(0.954, abs=0.01)
    assert result["flag_std_eV"] == pytest.approx(2.0 * np.quantile(std, 0.95), rel=0.03)
    # an ensemble with that calibration reports twice the spread, the same mean
    folder = ensemble_dir / "gfn2"
    card = json.loads((folder / "ensemble.json").read_text())
    frames = read_dataset(gap_dataset, require=())[:5]
    raw_mean, raw_std = GapPredictor.from_checkpoint(folder).predict(frames, return_std=True)
    (folder / "ensemble.json").write_text(json.dumps({**card, "calibration": {"std_scale": 2.0}}))
    try:
        mean, scaled = GapPredictor.from_checkpoint(folder).predict(frames, return_std=True)
    finally:
        (folder / "ensemble.json").write_text(json.dumps(card))
    np.testing.assert_allclose(mean, raw_mean, atol=1e-9)
    np.testing.assert_allclose(scaled, 2.0 * raw_std, rtol=1e-9)
