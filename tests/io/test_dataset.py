"""capml.io.dataset, the maintenance command: labels of one fidelity dropped, structure_ids prefixed."""

import numpy as np
import pytest

from capml.errors import InputError
from capml.io.contract import DatasetSettings, read_dataset, read_settings, write_dataset
from capml.io.dataset import drop_fidelity, main

from .frames import labelled


def test_drop_fidelity_of_named_structures_only(tmp_path):
    path = tmp_path / "d.extxyz"
    write_dataset(path, [labelled(i) for i in range(3)], DatasetSettings({"pbesol": {"ecut_eV": 350}}))
    assert drop_fidelity(path, "pbesol", ["s1"]) == 1
    assert ["gap_pbesol" in a.info for a in read_dataset(path)] == [True, False, True]
    assert "pbesol" in read_settings(path).fidelities
    with pytest.raises(InputError, match=r"d.extxyz: no frame with structure_id \['s9'\]"):
        drop_fidelity(path, "pbesol", ["s9"])


def test_prefix_ids_writes_a_renamed_copy_with_its_settings(tmp_path):
    path = tmp_path / "d.extxyz"
    settings = DatasetSettings({"pbesol": {"ecut_eV": 350}})
    write_dataset(path, [labelled(i) for i in range(3)], settings)
    main([str(path), "--prefix-ids", "r1_", "--out", str(tmp_path / "r1.extxyz")])
    renamed = read_dataset(tmp_path / "r1.extxyz")
    assert [a.info["structure_id"] for a in renamed] == ["r1_s0", "r1_s1", "r1_s2"]
    assert np.allclose(renamed[2].arrays["REF_forces"], read_dataset(path)[2].arrays["REF_forces"])
    assert read_settings(tmp_path / "r1.extxyz").fidelities == settings.fidelities
    assert [a.info["structure_id"] for a in read_dataset(path)] == ["s0", "s1", "s2"]  # the source is untouched
    with pytest.raises(InputError, match="must differ"):
        main([str(path), "--prefix-ids", "r1_", "--out", str(path)])


def test_concat_keeps_order_and_settings_and_refuses_clashes(tmp_path):
    settings = DatasetSettings({"pbesol": {"ecut_eV": 350}})
    a, b = tmp_path / "a.extxyz", tmp_path / "b.extxyz"
    write_dataset(a, [labelled(i) for i in range(2)], settings)
    write_dataset(b, [labelled(i) for i in range(2, 5)], settings)
    main([str(tmp_path / "ab.extxyz"), "--concat", str(a), str(b)])
    joined = read_dataset(tmp_path / "ab.extxyz")
    assert [x.info["structure_id"] for x in joined] == ["s0", "s1", "s2", "s3", "s4"]
    assert np.allclose(joined[3].arrays["REF_forces"], read_dataset(b)[1].arrays["REF_forces"])
    assert read_settings(tmp_path / "ab.extxyz").fidelities == settings.fidelities
    with pytest.raises(InputError, match="structure_id values repeat across inputs"):
        main([str(tmp_path / "aa.extxyz"), "--concat", str(a), str(a)])
    write_dataset(b, [labelled(i) for i in range(2, 5)], DatasetSettings({"pbesol": {"ecut_eV": 500}}))
    with pytest.raises(InputError, match="differ"):
        main([str(tmp_path / "ab2.extxyz"), "--concat", str(a), str(b)])
    assert not (tmp_path / "ab2.extxyz").exists()


def test_concat_splits_held_out_structures_from_the_rest(tmp_path):
    settings = DatasetSettings({"pbesol": {"ecut_eV": 350}})
    a, b = tmp_path / "a.extxyz", tmp_path / "b.extxyz"
    write_dataset(a, [labelled(i) for i in range(2)], settings)
    write_dataset(b, [labelled(i) for i in range(2, 5)], settings)
    main([str(tmp_path / "held.extxyz"), "--concat", str(a), str(b), "--structure", "s3", "--structure", "s0"])
    main([str(tmp_path / "train.extxyz"), "--concat", str(a), str(b), "--exclude", "s3", "--exclude", "s0"])
    assert [x.info["structure_id"] for x in read_dataset(tmp_path / "held.extxyz")] == ["s0", "s3"]
    assert [x.info["structure_id"] for x in read_dataset(tmp_path / "train.extxyz")] == ["s1", "s2", "s4"]
    assert read_settings(tmp_path / "held.extxyz").fidelities == settings.fidelities
    with pytest.raises(InputError, match=r"--structure s9: in none of the --concat inputs"):
        main([str(tmp_path / "none.extxyz"), "--concat", str(a), "--structure", "s9"])
    assert not (tmp_path / "none.extxyz").exists()
