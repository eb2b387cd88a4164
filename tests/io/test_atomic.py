"""capml.io.atomic: a file is replaced whole or not at all, and no temporary file is left behind."""

import threading

import pytest

from capml.io.atomic import atomic_path, write_text
from capml.io.contract import write_dataset
from capml.io.extxyz import read_structures


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half a new fi")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_concurrent_writers_each_replace_the_file_whole(tmp_path):
    target = tmp_path / "shared.txt"
    texts = [f"{k}\n" * 20000 for k in range(8)]
    threads = [threading.Thread(target=write_text, args=(target, text)) for text in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert target.read_text() in texts  # one writer's whole text, never a mix
    assert [p.name for p in tmp_path.iterdir()] == ["shared.txt"]


def test_write_dataset_failing_midway_keeps_the_previous_dataset(tmp_path):
    from ase.build import bulk

    path = tmp_path / "d.extxyz"
    first = bulk("Si", "diamond", a=5.43)
    first.info["structure_id"] = "a"
    write_dataset(path, [first])

    class Broken:  # not an Atoms: writing it raises after the first frame went out
        info = {}

    with pytest.raises(Exception):
        write_dataset(path, [first, Broken()])
    assert [a.info["structure_id"] for a in read_structures(path)] == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp") == []
