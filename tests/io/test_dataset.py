import numpy as np
import pytest
from ase.build import bulk

from capml.errors import InputError
from capml.io.dataset import (
    DatasetSettings,
    append_frame,
    keep_last_per_structure,
    merge_datasets,
    read_complete_frames,
    read_dataset,
    write_dataset,
    write_settings,
)
from capml.io.split import grouped_split


def labelled(i, config="c0"):
    atoms = bulk("Cu", cubic=True)
    atoms.info.update(REF_energy=-1.0 * i, REF_stress=np.eye(3) * 0.01, gap_pbesol=0.5, structure_id=f"s{i}",
                      config_id=config)
    atoms.arrays["REF_forces"] = np.full((4, 3), 0.1 * i)
    return atoms


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


def test_torn_last_frame_is_cut(tmp_path):
    path = tmp_path / "grow.extxyz"
    for i in range(2):
        append_frame(path, labelled(i))
    with open(path, "a") as handle:
        handle.write("4\nLattice=\"3.6 0 0 0 3.6 0 0 0 3.6\" Properties=species:S:1:pos:R:3\nCu 0 0 0\n")
    frames = read_complete_frames(path)
    assert [a.info["structure_id"] for a in frames] == ["s0", "s1"]
    assert len(read_dataset(path, require=())) == 2  # the file itself was repaired


def test_relabelled_frames_keep_their_place_and_input_order(tmp_path):
    path = tmp_path / "d.extxyz"
    write_dataset(path, [labelled(i) for i in range(4)])
    newer = labelled(1)
    newer.info["REF_energy"] = 5.0
    append_frame(path, newer)  # s1 relabelled
    keep_last_per_structure(path)
    frames = read_dataset(path)
    assert [a.info["structure_id"] for a in frames] == ["s0", "s1", "s2", "s3"]
    assert frames[1].info["REF_energy"] == 5.0
    # with the input's order: sorted into it; ids the input does not know stay last, in file order
    keep_last_per_structure(path, ["s3", "s0", "s2"])
    assert [a.info["structure_id"] for a in read_dataset(path)] == ["s3", "s0", "s2", "s1"]


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


def test_grouped_split_keeps_groups_together_and_is_seeded():
    frames = [labelled(i, config=f"c{i % 7}") for i in range(70)]
    splits = grouped_split(frames, (0.6, 0.2, 0.2), seed=5)
    assert sorted(np.concatenate(splits).tolist()) == list(range(70))
    groups = [{frames[i].info["config_id"] for i in split} for split in splits]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    again = grouped_split(frames, (0.6, 0.2, 0.2), seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(splits, again))
    with pytest.raises(InputError, match="fractions"):
        grouped_split(frames, (0.5, 0.2))


def test_drop_fidelity_of_named_structures_only(tmp_path):
    from capml.io.dataset import drop_fidelity, read_settings

    path = tmp_path / "d.extxyz"
    write_dataset(path, [labelled(i) for i in range(3)], DatasetSettings({"pbesol": {"ecut_eV": 350}}))
    assert drop_fidelity(path, "pbesol", ["s1"]) == 1
    assert ["gap_pbesol" in a.info for a in read_dataset(path)] == [True, False, True]
    assert "pbesol" in read_settings(path).fidelities
    with pytest.raises(InputError, match=r"d.extxyz: no frame with structure_id \['s9'\]"):
        drop_fidelity(path, "pbesol", ["s9"])


def test_prefix_ids_writes_a_renamed_copy_with_its_settings(tmp_path):
    from capml.io.dataset import main, read_settings

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


def test_json_outputs_are_strict_and_atomic(tmp_path):
    import json

    from capml.io.jsonio import write_json

    path = write_json(tmp_path / "metrics.json", {"mae": float("nan"), "r2": np.float32(0.5), "n": np.int64(3),
                                                  "values": np.array([1.0, np.inf])})
    assert json.loads(path.read_text()) == {"mae": None, "r2": 0.5, "n": 3, "values": [1.0, None]}
    assert "NaN" not in path.read_text() and not list(tmp_path.glob("*.tmp"))
