"""The mlip config group and experiments compose as train.py composes them (`- mlip: default`, experiment=...)."""

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from capml.cli import CONFIG_DIR, ROOT


@pytest.fixture
def primary(tmp_path):
    """A primary config with train.yaml's system and mlip slots, searching the shipped conf/ for the groups."""
    (tmp_path / "primary.yaml").write_text(
        "defaults:\n  - _self_\n  - system/_defaults\n  - system: ag3sbri\n  - mlip: default\n  - optional experiment: null\n"
        f"task: gnn\nhydra:\n  searchpath:\n    - file://{CONFIG_DIR}\n"
    )
    return tmp_path


@pytest.mark.parametrize("experiment", ["mlip_finetune", "mlip_base"])
def test_experiments_set_task_and_resolve(primary, experiment):
    with initialize_config_dir(config_dir=str(primary), version_base="1.3"):
        cfg = compose(config_name="primary", overrides=[f"experiment={experiment}"])
    assert cfg.task == "mlip"
    m = OmegaConf.to_container(cfg.mlip, resolve=True)
    assert m["dataset"] == str(ROOT / "data" / "ag3sbri" / "dataset.extxyz")
    assert m["loss"] == "stress" and m["stress_weight"] > 0
    if experiment == "mlip_finetune":
        assert m["foundation_model"] == str(ROOT / "models" / "mace_base.model")
        assert m["E0s"] == "estimated" and m["pin_splits"].endswith("models/mace_base.splits.json")
        assert m["export_model"] == str(ROOT / "models" / "mace_finetuned.model")
    else:
        assert m["foundation_model"] is None and m["E0s"] == "average"
        assert m["export_model"] == str(ROOT / "models" / "mace_base.model")


@pytest.mark.parametrize("name", ["mace_base.model", "mace_finetuned.model"])
def test_bundled_models_load_as_calculators(name):
    from capml.mlip.calculator import mace_calculator

    calc = mace_calculator(ROOT / "models" / name, dtype="float32")
    assert set(int(z) for z in calc.models[0].atomic_numbers) == {16, 35, 47, 53}  # S, Br, Ag, I
