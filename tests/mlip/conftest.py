"""Fixtures of tests/mlip: a small EMT dataset and a tiny MACE trained on it once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from .mlip_data import emt_frames, mlip_config

from capml.io.contract import write_dataset
from tests.conftest import built_once


@pytest.fixture(scope="session")
def emt_dataset(tmp_path_factory):
    def build(folder):
        write_dataset(folder / "dataset.extxyz", emt_frames())
        return {"path": str(folder / "dataset.extxyz")}

    return Path(built_once(tmp_path_factory, "emt_dataset", build)["path"])


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, emt_dataset):
    """A tiny MACE trained from scratch on the EMT set by capml.mlip.train.run (mace's trainer), in float32 like the
    bundled base model (so the float64 fine-tune test covers the conversion): the run summary."""
    def build(out):
        from capml.mlip.train import run

        cfg = mlip_config(dataset=str(emt_dataset), out_dir=str(out), foundation_model=None, E0s="average", epochs=15,
                          default_dtype="float32", test_fraction=0.25, val_fraction=0.2, lr=0.02, ema=False,
                          **{"architecture.num_channels": 8, "evaluate.phonons": None})
        return run(cfg)

    return built_once(tmp_path_factory, "tiny_base", build)
