"""Shard files of a label run merged by hand, the way README and tools/label_queue.sh tell it."""

import os
import subprocess
import sys

import pytest

from capml.cli import ROOT
from capml.io.contract import DatasetSettings, read_dataset, read_settings, write_dataset
from capml.io.shards import shard_files, shard_path

from .frames import labelled


def test_merge_shards_from_the_command_line_in_input_order(tmp_path):
    settings = DatasetSettings({"pbesol": {"ecut_eV": 350}})
    structures = tmp_path / "in.extxyz"
    write_dataset(structures, [labelled(i) for i in range(4)])
    out = tmp_path / "d.extxyz"
    write_dataset(out, [labelled(2)], settings)
    relabelled = labelled(2)
    relabelled.info["gap_pbesol"] = 0.7
    write_dataset(shard_path(out, 0, 2), [labelled(0), relabelled], settings)
    write_dataset(shard_path(out, 1, 2), [labelled(3), labelled(1)], settings)

    result = subprocess.run([sys.executable, "-m", "capml.io.dataset", str(out), "--merge-shards", "--structures",
                             str(structures)], cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "4 frames merged from shard files, 4 frames in all" in result.stdout
    frames = read_dataset(out, gaps=["pbesol"])
    assert [a.info["structure_id"] for a in frames] == ["s0", "s1", "s2", "s3"]
    assert frames[2].info["gap_pbesol"] == pytest.approx(0.7)  # the shard's frame replaces the merged file's
    assert read_settings(out).fidelities == settings.fidelities
    assert shard_files(out) == []

