"""The MACE stage's primary config (conf/train_mlip.yaml) and its experiments compose as train.py composes them."""

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from capml.cli import CONFIG_DIR, ROOT


@pytest.mark.parametrize("experiment", ["mlip_finetune", "mlip_base"])
def test_experiments_compose_on_train_mlip_and_resolve(experiment):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train_mlip", overrides=[f"experiment={experiment}"])
    assert cfg.run_name == f"mlip_{cfg.mlip.name}" and "model" not in cfg
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
