"""capml.io.contract: keys, shapes and finite values checked on reading, label settings never mixed."""

import numpy as np
import pytest

from capml.errors import InputError
from capml.io.contract import DatasetSettings, merge_datasets, read_dataset, write_dataset, write_settings

from .frames import labelled


def test_round_trip_and_validation(tmp_path):
    path = tmp_path / "d.extxyz"
    write_dataset(path, [labelled(i) for i in range(3)], DatasetSettings({"pbesol": {"ecut_eV": 350}}))
    frames = read_dataset(path, gaps=["pbesol"])
    assert len(frames) == 3 and frames[2].arrays["REF_forces"][0, 0] == pytest.approx(0.2)
    assert frames[0].info["REF_stress"].shape == (3, 3)
    with pytest.raises(InputError, match=r"d.extxyz: frame 0: missing info key 'gap_hse06'"):
        read_dataset(path, gaps=["hse06"])


def test_missing_keys_nan_and_corrupt(tmp_path):
    atoms = labelled(1)
    del atoms.info["REF_energy"]
    write_dataset(tmp_path / "a.extxyz", [atoms])
    with pytest.raises(InputError, match="a.extxyz: frame 0: missing info key 'REF_energy'"):
        read_dataset(tmp_path / "a.extxyz")
    atoms = labelled(1)
    atoms.arrays["REF_forces"][2, 1] = np.nan
    write_dataset(tmp_path / "b.extxyz", [atoms])
    with pytest.raises(InputError, match="b.extxyz: frame 0: 'REF_forces' contains NaN"):
        read_dataset(tmp_path / "b.extxyz")
    (tmp_path / "c.extxyz").write_text("4\nLattice=garbage\nCu 0 0\n")
    with pytest.raises(InputError, match="c.extxyz: cannot read"):
        read_dataset(tmp_path / "c.extxyz")
    with pytest.raises(InputError, match="not found"):
        read_dataset(tmp_path / "nope.extxyz")


def test_merge_refuses_different_settings(tmp_path):
    a, b, c = (tmp_path / n for n in ("a.extxyz", "b.extxyz", "c.extxyz"))
    write_dataset(a, [labelled(0)], DatasetSettings({"pbesol": {"ecut_eV": 350, "kpts": [1, 1, 1]}}))
    write_dataset(b, [labelled(1)], DatasetSettings({"pbesol": {"ecut_eV": 400, "kpts": [1, 1, 1]}}))
    write_dataset(c, [labelled(2)], DatasetSettings({"pbesol": {"kpts": [1, 1, 1], "ecut_eV": 350}}))
    with pytest.raises(InputError, match="label settings for fidelity 'pbesol' differ"):
        merge_datasets([a, b], tmp_path / "ab.extxyz")
    assert not (tmp_path / "ab.extxyz").exists()
    merged = merge_datasets([a, c], tmp_path / "ac.extxyz")
    assert len(merged) == 2 and (tmp_path / "ac.extxyz.settings.json").exists()


def test_corrupt_settings_sidecar(tmp_path):
    path = tmp_path / "a.extxyz"
    write_dataset(path, [labelled(0)])
    (tmp_path / "a.extxyz.settings.json").write_text("{not json")
    with pytest.raises(InputError, match="settings.json"):
        merge_datasets([path], tmp_path / "out.extxyz")
    write_settings(path, DatasetSettings({"x": {}}))
