"""Records that travel: a record names a file of the capml checkout relative to it (``capml_root:<path>``), so the
records committed with the models and data name the same files in any clone; files elsewhere keep absolute paths."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from capml.cli import ROOT
from capml.io.paths import portable_path, resolve_path

ABSOLUTE = re.compile(r"^(/|~|[A-Za-z]:[\\/]|\\\\)")  # POSIX, home, Windows drive or UNC
RECORDS = sorted(p for folder in ("models", "data") for p in (ROOT / folder).rglob("*.json"))


def strings(value):
    """Every string of a JSON document, keys included."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value


def test_a_path_in_the_checkout_is_named_relative_to_it(tmp_path, monkeypatch):
    dataset = ROOT / "data" / "ag3sbri" / "relaxed.extxyz"
    assert portable_path(dataset) == "capml_root:data/ag3sbri/relaxed.extxyz"
    assert resolve_path(portable_path(dataset)) == dataset
    monkeypatch.chdir(ROOT / "data")
    assert portable_path("ag3sbri/relaxed.extxyz") == "capml_root:data/ag3sbri/relaxed.extxyz"  # from the cwd
    assert portable_path("capml_root:models/x.model") == "capml_root:models/x.model"
    outside = tmp_path / "mine.extxyz"
    assert portable_path(outside) == str(outside) and resolve_path(str(outside)) == outside


@pytest.mark.parametrize("record", RECORDS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_committed_record_holds_an_absolute_path(record):
    found = list(strings(json.loads(record.read_text())))
    assert [s for s in found if ABSOLUTE.match(s)] == []
    # what a record names inside the checkout's data and models is there (runs/ is not committed)
    named = [resolve_path(s) for s in found if s.startswith("capml_root:") and not s.startswith("capml_root:runs/")]
    assert [str(p) for p in named if not p.exists()] == []


def test_records_of_the_bundled_models_name_their_data():
    card = json.loads((ROOT / "models" / "gnn_gap_hse06" / "ensemble.json").read_text())
    assert resolve_path(card["data"]) == ROOT / "data" / "ag3sbri" / "dataset.extxyz"
    assert all(resolve_path(p).is_file() for p in card["extra_train"]) and len(card["extra_train"]) == 8


def test_splits_record_names_the_checkout_relative_to_it(tmp_path):
    from capml.mlip.data import plan_splits

    data = ROOT / "data" / "ag3sbri"
    plan = plan_splits(data / "dataset.extxyz", max_frames=60, extra_train=[data / "md_check_round0.extxyz"])
    plan.write(tmp_path)
    record = json.loads((tmp_path / "splits.json").read_text())
    assert record["dataset"] == "capml_root:data/ag3sbri/dataset.extxyz"
    assert list(record["extra_train"]) == ["capml_root:data/ag3sbri/md_check_round0.extxyz"]
    assert record["train"] == str(tmp_path / "train.extxyz")  # outside the checkout: absolute
    assert resolve_path(record["dataset"]).is_file()


def test_no_committed_run_config_names_a_folder_of_the_machine_that_ran_it():
    """The resolved configs committed beside the data (``<stage>.config.yaml``) name files of the checkout as
    ``capml_root:<path>`` too, never by the absolute path of the machine that made them."""
    import yaml

    configs = sorted(p for folder in ("models", "data") for p in (ROOT / folder).rglob("*.config.yaml"))
    assert configs
    for path in configs:
        values = list(strings(yaml.safe_load(path.read_text())))
        absolute = [v for v in values if str(ROOT) in v or "/work/main" in v]  # this checkout, or the one that made it
        assert absolute == [], f"{path.relative_to(ROOT)}: {absolute[:3]}"


def test_a_run_record_names_checkout_files_portably_and_keeps_the_rest(tmp_path):
    """save_resolved_config: the record of a run names files of the checkout as ``capml_root:<path>`` (resolved
    back to the same files), and paths outside it and other values as they are."""
    import yaml
    from omegaconf import OmegaConf

    from capml.io.records import save_resolved_config

    cfg = OmegaConf.create({"root": str(ROOT), "data": "${root}/data/ag3sbri/dataset.extxyz",
                            "extra": ["${root}/models", str(tmp_path / "out")], "steps": 3,
                            "note": f"not a path: {ROOT}/models"})
    record = yaml.safe_load(save_resolved_config(cfg, tmp_path, "train").read_text())
    assert record["data"] == "capml_root:data/ag3sbri/dataset.extxyz" and record["steps"] == 3
    assert record["extra"] == ["capml_root:models", str(tmp_path / "out")] and record["note"] == cfg.note
    assert resolve_path(record["data"]) == ROOT / "data" / "ag3sbri" / "dataset.extxyz"
    assert resolve_path(record["root"]) == ROOT
