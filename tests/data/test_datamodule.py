"""Grouped seeded splits, frames without the target dropped and counted, scalers fitted on train only."""

import logging

import numpy as np
import pytest

from capml.data.datamodule import GraphDataModule
from capml.errors import InputError
from capml.io.contract import read_dataset, read_settings


def module(path, tmp_path, **kwargs):
    kwargs.setdefault("split_fractions", (0.6, 0.2, 0.2))
    dm = GraphDataModule(path, cache_dir=tmp_path, batch_size=4, **kwargs)
    dm.setup("fit")
    return dm


def test_splits_are_grouped_seeded_and_disjoint(gap_dataset, tmp_path):
    frames = read_dataset(gap_dataset, require=())
    dm = module(gap_dataset, tmp_path, target="gap_gfn2", split_seed=1)
    groups = {split: {frames[k].info["config_id"] for k in idx} for split, idx in dm.indices.items()}
    assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"])
    assert not (groups["val"] & groups["test"])
    assert sorted(np.concatenate(list(dm.indices.values()))) == list(range(len(frames)))
    again = module(gap_dataset, tmp_path, target="gap_gfn2", split_seed=1)
    assert all(np.array_equal(dm.indices[s], again.indices[s]) for s in dm.indices)
    batch = next(iter(dm.train_dataloader()))
    assert batch.num_graphs == 4 and batch.gap_gfn2.shape == (4,)


def test_frames_without_the_target_are_dropped_and_logged(gap_dataset, tmp_path, caplog):
    frames = read_dataset(gap_dataset, require=())
    labelled = [k for k, a in enumerate(frames) if "gap_ipea1" in a.info]
    with caplog.at_level(logging.INFO, logger="capml.data.datamodule"):
        dm = GraphDataModule(gap_dataset, target="gap_ipea1", cache_dir=tmp_path, split_fractions=(0.5, 0.5, 0.0),
                             group_key="structure_id")
        dm.setup("fit")
    assert f"dropped {len(frames) - len(labelled)} of {len(frames)} frames without 'gap_ipea1'" in caplog.text
    assert sorted(np.concatenate(list(dm.indices.values()))) == labelled
    assert dm.dropped == len(frames) - len(labelled)


def test_scalers_use_the_training_split_only(gap_dataset, tmp_path):
    frames = read_dataset(gap_dataset, require=())
    dm = module(gap_dataset, tmp_path, target="gap_gfn2")
    train = [frames[k] for k in dm.indices["train"]]
    gaps = np.array([a.info["gap_gfn2"] for a in train])
    minmax = dm.target_scaler("minmax")
    assert np.isclose(minmax.shift, gaps.min(), atol=1e-6) and np.isclose(minmax.scale, np.ptp(gaps), atol=1e-6)
    features = dm.feature_scaler()
    masses = np.concatenate([a.get_masses() for a in train])
    assert np.isclose(features.mean[1], masses.mean(), rtol=1e-3) and np.isclose(features.std[1], masses.std(), rtol=1e-3)


def test_empty_validation_split_is_an_input_error(gap_dataset, tmp_path):
    with pytest.raises(InputError, match="the val split is empty"):
        module(gap_dataset, tmp_path, target="gap_gfn2", split_fractions=(1.0, 0.0, 0.0))


def test_max_frames_keeps_the_first_frames_only(gap_dataset, tmp_path):
    frames = read_dataset(gap_dataset, require=())
    dm = module(gap_dataset, tmp_path, target="gap_gfn2", group_key="structure_id", max_frames=10)
    assert sorted(np.concatenate(list(dm.indices.values()))) == list(range(10)) and dm.dropped == 0
    with pytest.raises(InputError, match=rf"max_frames={len(frames) + 1}, expected 1..{len(frames)}"):
        module(gap_dataset, tmp_path, target="gap_gfn2", max_frames=len(frames) + 1)


def test_extra_train_frames_join_the_training_split_only(gap_dataset, tmp_path):
    from capml.io.contract import write_dataset

    frames = read_dataset(gap_dataset, require=())
    extra = [a.copy() for a in frames[:6]]
    for k, atoms in enumerate(extra):
        for key in [key for key in atoms.info if key.startswith("gap_")]:
            del atoms.info[key]  # the extra file carries other targets than the main one
        atoms.info.update(structure_id=f"md_{k}", gap_gfn2=10.0 + k)  # far outside the set's gaps
    extra[5].info.pop("gap_gfn2")  # a frame without the target adds nothing
    write_dataset(tmp_path / "md.extxyz", extra, read_settings(gap_dataset))  # same labeller, same settings
    plain = module(gap_dataset, tmp_path, target="gap_gfn2", split_seed=2)
    grown = module(gap_dataset, tmp_path, target="gap_gfn2", split_seed=2, extra_train=[tmp_path / "md.extxyz"])
    assert all(np.array_equal(plain.indices[s], grown.indices[s]) for s in plain.indices) and grown.n_extra == 5
    for split in ("val", "test"):
        assert grown.records(split)[0] == plain.records(split)[0]
    ids, y = grown.records("train")
    assert ids == plain.records("train")[0] + [f"md_{k}" for k in range(5)]
    assert np.allclose(y[-5:], 10.0 + np.arange(5))
    graphs = list(grown.subset("train"))
    assert len(graphs) == len(ids) and np.allclose([g.gap_gfn2.item() for g in graphs], y)
    assert "gap_ipea1" in plain.subset("train")[0].keys() and "gap_ipea1" not in graphs[0].keys()
    grown.batch_size = len(ids)  # one batch mixing both files
    (batch,) = list(grown.train_dataloader())
    assert batch.num_graphs == len(ids) and np.allclose(np.sort(batch.gap_gfn2.numpy()), np.sort(y), atol=1e-5)
    assert np.isclose(grown.target_scaler("minmax").scale + grown.target_scaler("minmax").shift, 14.0, atol=1e-5)
    with pytest.raises(InputError, match="already in"):
        module(gap_dataset, tmp_path, target="gap_gfn2", extra_train=[gap_dataset])
    with pytest.raises(InputError, match=r"md.extxyz: structure_id 'md_0' is already in .*md.extxyz"):
        module(gap_dataset, tmp_path, target="gap_gfn2", extra_train=[tmp_path / "md.extxyz"] * 2)


def test_an_extra_train_file_of_other_settings_is_refused(gap_dataset, tmp_path):
    """Labels of another labeller (settings differ, or no settings to tell) never join the training split."""
    from capml.io.contract import DatasetSettings, write_dataset

    extra = [a.copy() for a in read_dataset(gap_dataset, require=())[:3]]
    for k, atoms in enumerate(extra):
        atoms.info["structure_id"] = f"md_{k}"
    settings = read_settings(gap_dataset).fidelities
    other = DatasetSettings({**settings, "gfn2": {**settings["gfn2"], "method": "GFN1-xTB"}})
    write_dataset(tmp_path / "gfn1.extxyz", extra, other)
    with pytest.raises(InputError, match=r"gfn1.extxyz .*label settings for fidelity 'gfn2' differ"):
        module(gap_dataset, tmp_path, target="gap_gfn2", extra_train=[tmp_path / "gfn1.extxyz"])
    write_dataset(tmp_path / "bare.extxyz", extra)
    with pytest.raises(InputError, match=r"bare.extxyz: no label settings"):
        module(gap_dataset, tmp_path, target="gap_gfn2", extra_train=[tmp_path / "bare.extxyz"])


def test_an_extra_train_file_without_the_target_adds_nothing(gap_dataset, tmp_path):
    """A PBEsol-only file among the extra files of a HSE06 model: no frames from it, and no error."""
    from capml.io.contract import write_dataset

    frames = read_dataset(gap_dataset, require=())
    other = [a.copy() for a in frames[:3]]
    for k, atoms in enumerate(other):
        atoms.info.pop("gap_ipea1", None)
        atoms.info["structure_id"] = f"other_{k}"
    write_dataset(tmp_path / "other.extxyz", other, read_settings(gap_dataset))
    plain = module(gap_dataset, tmp_path, target="gap_ipea1", split_seed=1, split_fractions=[0.5, 0.25, 0.25])
    grown = module(gap_dataset, tmp_path, target="gap_ipea1", split_seed=1, split_fractions=[0.5, 0.25, 0.25],
                   extra_train=[tmp_path / "other.extxyz"])
    assert grown.n_extra == 0 and grown.records("train")[0] == plain.records("train")[0]
    assert grown.target_scaler("minmax") == plain.target_scaler("minmax")
    assert len(grown.subset("train")) == len(plain.subset("train"))
