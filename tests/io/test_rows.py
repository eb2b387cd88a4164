"""RowLog: a table written row by row survives a kill and tells a rerun what it has."""

from __future__ import annotations

import csv

from capml.io.rows import RowLog


def test_rows_appended_one_at_a_time_and_read_back_as_done_keys(tmp_path):
    path = tmp_path / "gaps.csv"
    table = RowLog(path, ["structure_id", "kpts", "gap_eV"])
    assert table.rows() == [] and table.done("structure_id") == set() and not path.exists()
    table.append({"structure_id": "a", "kpts": 2, "gap_eV": 1.25})
    # a second writer (the rerun after a kill) appends to the same file without a second header
    RowLog(path, table.fields).append({"structure_id": "b", "kpts": 4, "gap_eV": 0.5})
    with path.open(newline="") as f:
        assert list(csv.reader(f)) == [["structure_id", "kpts", "gap_eV"], ["a", "2", "1.25"], ["b", "4", "0.5"]]
    assert table.done("structure_id", "kpts") == {("a", "2"), ("b", "4")}
