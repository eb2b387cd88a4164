"""The PyG dataset: targets computed from the file independently, the on-disk cache and its key."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from capml.data.graph_dataset import CrystalGraphDataset
from capml.errors import InputError
from capml.io.contract import read_dataset


def test_targets_match_the_file(gap_dataset, tmp_path):
    dataset = CrystalGraphDataset(gap_dataset, cache_dir=tmp_path)
    frames = read_dataset(gap_dataset, require=())
    assert len(dataset) == len(frames)
    assert set(dataset.targets) == {"gap_gfn2", "gap_ipea1", "gap_gfn2_minus_gap_ipea1", "gap_ipea1_minus_gap_gfn2",
                                    "energy_per_atom", "hydrostatic_stress"}
    both = [a for a in frames if "gap_ipea1" in a.info]
    delta = dataset.target("gap_ipea1_minus_gap_gfn2")
    assert np.allclose(delta[np.isfinite(delta)], [a.info["gap_ipea1"] - a.info["gap_gfn2"] for a in both], atol=1e-6)
    assert np.allclose(dataset.target("gap_gfn2"), [a.info["gap_gfn2"] for a in frames], atol=1e-6)
    assert np.allclose(dataset.target("energy_per_atom"), [a.info["REF_energy"] / len(a) for a in frames], rtol=1e-6)
    pressure = [-np.mean(np.diag(np.reshape(a.info["REF_stress"], (3, 3)))) for a in frames]
    assert np.allclose(-dataset.target("hydrostatic_stress"), pressure, rtol=1e-5, atol=1e-9)
    ipea1 = dataset.target("gap_ipea1")
    assert np.isfinite(ipea1).sum() == sum("gap_ipea1" in a.info for a in frames) < len(frames)
    graph = dataset[3]
    assert graph.num_nodes == len(frames[3]) and graph.x.shape[1] == 4
    with pytest.raises(InputError, match="target 'gap_hse06' not in the dataset"):
        dataset.target("gap_hse06")


def test_cache_is_reused_and_rebuilt_when_the_file_changes(gap_dataset, tmp_path):
    first = CrystalGraphDataset(gap_dataset, cache_dir=tmp_path)
    cached = first.processed_paths[0]
    stamp = (tmp_path / cached).stat().st_mtime_ns
    again = CrystalGraphDataset(gap_dataset, cache_dir=tmp_path)
    assert again.processed_paths[0] == cached and (tmp_path / cached).stat().st_mtime_ns == stamp
    grown = tmp_path / "grown.extxyz"
    shutil.copy(gap_dataset, grown)
    with open(grown, "a") as handle, open(gap_dataset) as source:
        first_frame = "".join(source.readlines()[:22])  # one more 20-atom frame, under a new id
        sid = first_frame.split("structure_id=")[1].split()[0]
        handle.write(first_frame.replace(f"structure_id={sid}", "structure_id=grown_0"))
    bigger = CrystalGraphDataset(grown, cache_dir=tmp_path)
    assert len(bigger) == len(first) + 1 and bigger.processed_paths[0] != cached
    assert len(CrystalGraphDataset(gap_dataset, cutoff_A=4.0, cache_dir=tmp_path)[0].edge_weight) < len(first[0].edge_weight)


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="nothere.extxyz: dataset file not found"):
        CrystalGraphDataset(tmp_path / "nothere.extxyz")


def test_a_torn_graph_cache_is_rebuilt(gap_dataset, tmp_path):
    """A kill while the cache was written leaves half a meta.json or graphs.pt: the next run rebuilds it."""
    first = CrystalGraphDataset(gap_dataset, cache_dir=tmp_path)
    meta, graphs = Path(first.processed_paths[1]), Path(first.processed_paths[0])
    meta.write_text(meta.read_text()[:40])
    again = CrystalGraphDataset(gap_dataset, cache_dir=tmp_path)
    assert len(again) == len(first) and again.meta == first.meta
    graphs.write_bytes(graphs.read_bytes()[:100])
    third = CrystalGraphDataset(gap_dataset, cache_dir=tmp_path)
    assert len(third) == len(first)
