"""GapPredictor from a checkpoint: the same numbers as the training-time data path, in any batch size,
from a list or streamed from a file."""

import ase.io
import numpy as np
import pandas as pd
import pytest

from capml.errors import InputError
from capml.io.contract import read_dataset
from capml.models.predict import GapPredictor


def test_predictions_match_the_training_data_path(trained_run, gap_dataset):
    frames = read_dataset(gap_dataset, require=())
    table = pd.read_csv(trained_run["out"] / "predictions.csv").set_index("structure_id")
    predictor = GapPredictor.from_checkpoint(trained_run["checkpoint"], batch_size=5)
    ours = predictor.predict(frames)
    assert ours.shape == (len(frames),) and ours.dtype == np.float64
    reference = table.loc[[a.info["structure_id"] for a in frames], "y_pred"].to_numpy()
    assert np.allclose(ours, reference, atol=1e-5)
    assert np.allclose(GapPredictor.from_checkpoint(trained_run["checkpoint"], batch_size=1).predict(frames[:4]),
                       ours[:4], atol=1e-5)


def test_predict_file_streams_batches(trained_run, gap_dataset, tmp_path):
    frames = read_dataset(gap_dataset, require=())
    trajectory = tmp_path / "traj.extxyz"
    ase.io.write(trajectory, [a.copy() for a in frames[:7]])
    predictor = GapPredictor.from_checkpoint(trained_run["checkpoint"], batch_size=3)
    batches = list(predictor.predict_file(trajectory))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert np.allclose(np.concatenate(batches), predictor.predict(frames[:7]), atol=1e-6)
    assert predictor.predict([]).shape == (0,)


def test_bad_checkpoint_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="nothing.ckpt: checkpoint not found"):
        GapPredictor.from_checkpoint(tmp_path / "nothing.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="junk.ckpt: not a capml GNN checkpoint"):
        GapPredictor.from_checkpoint(junk)


def test_a_structure_without_periodicity_is_refused(trained_run):
    from ase.build import bulk

    from capml.errors import InputError
    from capml.models.predict import GapPredictor

    model = GapPredictor.from_checkpoint(trained_run["checkpoint"])
    crystal = bulk("Cu", cubic=True)
    molecule = crystal.copy()
    molecule.pbc = False
    with pytest.raises(InputError, match=r"structure 1: pbc=\[False, False, False\], expected a periodic crystal"):
        model.predict([crystal, molecule])
