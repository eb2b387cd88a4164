"""capml.io.extxyz: files that runs append to lose at most a torn last frame, and relabelled frames keep their
place."""

from capml.io.contract import read_dataset, write_dataset
from capml.io.extxyz import append_frame, keep_last_per_structure, read_complete_frames

from .frames import labelled


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
