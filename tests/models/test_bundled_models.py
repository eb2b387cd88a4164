"""The bundled gap ensembles load as the demo loads them: five members each, their fidelity, the calibration and
the MACE descriptors they record, and finite predictions with a spread on a bundled relaxed structure."""

from __future__ import annotations

import json

import numpy as np
import pytest

from capml.cli import ROOT
from capml.io.contract import read_dataset
from capml.models.predict import GapPredictor


@pytest.mark.parametrize("name, fidelity", [("gnn_gap_hse06", "hse06"), ("gnn_gap_pbesol", "pbesol")])
def test_bundled_ensemble(name, fidelity):
    folder = ROOT / "models" / name
    card = json.loads((folder / "ensemble.json").read_text())
    model = GapPredictor.from_checkpoint(folder)
    assert model.members == 5 and model.fidelity == fidelity and model.target == card["target"]
    assert model.descriptors == "capml_root:models/mace_finetuned.model"
    assert model.std_scale == pytest.approx(card["calibration"]["std_scale"]) and model.std_scale > 1
    frames = read_dataset(ROOT / "data" / "ag3sbri" / "relaxed.extxyz", require=())[:2]
    mean, std = model.predict(frames, return_std=True)
    raw = np.array([GapPredictor.from_checkpoint(f).predict(frames) for f in sorted(folder.glob("*.ckpt"))])
    np.testing.assert_allclose(mean, raw.mean(0), atol=1e-6)
    np.testing.assert_allclose(std, model.std_scale * raw.std(0, ddof=1), rtol=1e-6)
    assert np.isfinite(mean).all() and (mean > 0).all() and (std > 0).all()
