"""MACE descriptors as node inputs: the batched featuriser gives exactly what mace-torch's own
``MACECalculator.get_descriptors`` gives cell by cell, and a checkpoint trained with them rebuilds its inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from capml.graphs.build import batch_graphs
from capml.graphs.descriptors import MACEDescriptors, portable, resolve
from capml.io.contract import read_dataset
from tests.simulate.conftest import small_mace


@pytest.fixture(scope="module")
def mace_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("desc") / "small.model"
    torch.save(small_mace(), path)
    return path


def test_batched_descriptors_equal_mace_get_descriptors(mace_path, gap_dataset):
    frames = read_dataset(gap_dataset, require=())[:5]
    featuriser = MACEDescriptors(mace_path, batch_size=2)  # batches of 2, 2, 1
    ours = featuriser(frames)
    assert featuriser.width == 16 * 2  # 16 scalar channels per interaction, 2 interactions
    for atoms, mine in zip(frames, ours):
        reference = featuriser.calc.get_descriptors(atoms, invariants_only=True)
        np.testing.assert_allclose(mine, reference, atol=1e-10)
    graph = batch_graphs(frames, 5.5, descriptors=str(mace_path))
    assert graph.x.shape == (sum(len(a) for a in frames), 4 + 32)
    np.testing.assert_allclose(graph.x[:len(frames[0]), 4:].numpy(), ours[0], rtol=1e-5, atol=1e-6)


def test_model_paths_inside_the_checkout_are_portable(tmp_path):
    from capml.cli import ROOT

    name = portable(ROOT / "models" / "mace_finetuned.model")
    assert name == "capml_root:models/mace_finetuned.model" and resolve(name) == ROOT / "models" / "mace_finetuned.model"
    assert portable(tmp_path / "m.model") == str((tmp_path / "m.model").resolve())


def test_a_checkpoint_trained_with_descriptors_builds_its_own_inputs(mace_path, gap_dataset, tmp_path):
    from capml.models.predict import GapPredictor
    from capml.models.train import train_one
    from tests.conftest import gnn_config

    metrics = train_one(gnn_config(gap_dataset, tmp_path / "run", f"data.descriptors={mace_path}",
                                   "trainer.max_epochs=2"))
    model = GapPredictor.from_checkpoint(metrics["checkpoint"])
    assert model.descriptors == str(mace_path.resolve())
    frames = read_dataset(gap_dataset, require=())
    predictions = model.predict(frames)
    table = __import__("pandas").read_csv(tmp_path / "run" / "predictions.csv")
    by_id = dict(zip(table["structure_id"].astype(str), table["y_pred"]))
    np.testing.assert_allclose(predictions, [by_id[str(a.info["structure_id"])] for a in frames], atol=1e-5)


def test_remembered_descriptors_are_reused_and_bounded(mace_path, gap_dataset):
    frames = read_dataset(gap_dataset, require=())[:6]
    featuriser = MACEDescriptors(mace_path)
    featuriser.memory_size = 4
    first = featuriser(frames)  # more structures than it remembers: every one still comes back
    assert len(featuriser.memory) == 4 and all(f.shape == (len(a), 32) for f, a in zip(first, frames))
    calls = []
    featuriser._compute, compute = (lambda s: calls.append(len(s)) or compute(s)), featuriser._compute
    again = featuriser(frames[2:])  # the last four are remembered
    assert calls == [] and all(np.array_equal(a, b) for a, b in zip(again, first[2:]))
    moved = frames[0].copy()
    moved.positions[0] += 0.1
    featuriser([moved])
    assert calls == [1]


def test_a_changed_mace_file_is_refused(gap_dataset, tmp_path):
    from capml.errors import InputError
    from capml.graphs.descriptors import descriptors_for
    from capml.models.predict import GapPredictor
    from capml.models.train import train_one
    from tests.conftest import gnn_config

    path = tmp_path / "mlip.model"
    torch.save(small_mace(seed=1), path)
    metrics = train_one(gnn_config(gap_dataset, tmp_path / "run", f"data.descriptors={path}", "trainer.max_epochs=1"))
    assert GapPredictor.from_checkpoint(metrics["checkpoint"]).descriptors == str(path.resolve())
    torch.save(small_mace(seed=2), path)  # "refitted" in place
    descriptors_for.cache_clear()
    with pytest.raises(InputError, match="has changed since"):
        GapPredictor.from_checkpoint(metrics["checkpoint"])


def test_float32_descriptors_move_the_bundled_gaps_by_under_1e4_eV():
    """The bundled HSE06 ensemble (reading MACE descriptors) on DFT-labelled MD
    snapshots and relaxed cells: float32 descriptors (simulate.gap_dtype) against the float64 it was trained on."""
    from capml.cli import ROOT
    from capml.errors import InputError
    from capml.models.predict import GapPredictor

    frames = (read_dataset(ROOT / "data/ag3sbri/md_check_eg_map_T100.extxyz", require=())
              + read_dataset(ROOT / "data/ag3sbri/relaxed_rattle.extxyz", require=()))
    path = ROOT / "models/gnn_gap_hse06"
    mean64, std64 = GapPredictor.from_checkpoint(path).predict(frames, return_std=True)
    model32 = GapPredictor.from_checkpoint(path, descriptor_dtype="float32")
    assert model32.descriptors and model32.descriptor_dtype == "float32"
    mean32, std32 = model32.predict(frames, return_std=True)
    assert np.abs(mean32 - mean64).max() < 1e-4 and np.abs(std32 - std64).max() < 1e-4
    assert np.abs(mean32 - mean64).max() > 0  # it did run in the other precision
    with pytest.raises(InputError, match="descriptor dtype 'float16'"):
        GapPredictor.from_checkpoint(path, descriptor_dtype="float16")
