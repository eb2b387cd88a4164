"""The command-line programs: ``simulate.py`` and ``train.py`` at the top of the checkout call these, and so do the
console scripts ``capml-simulate``, ``capml-train`` and ``capml-import`` (``pyproject.toml``), from any folder.
``--config-dir DIR`` adds a user's own config folder (systems, experiments) beside capml's ``conf/``."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from capml.cli import CONFIG_DIR, one_line_errors, run_hydra, train_config


@hydra.main(config_path=str(CONFIG_DIR), config_name="simulate", version_base="1.3")
@one_line_errors
def _simulate(cfg: DictConfig):
    from capml.simulate.stages import run_stage

    return run_stage(cfg)


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
@one_line_errors
def _train(cfg: DictConfig):
    return run_training(cfg)


def run_training(cfg: DictConfig):
    """What train.py runs for a composed config: the MACE stage for one with an ``mlip`` group
    (conf/train_mlip.yaml), the band-gap GNN for the others (conf/train.yaml)."""
    if "mlip" in cfg:
        from capml.mlip.train import run

        return run(cfg)
    from capml.models.workflow import run

    return run(cfg)


def simulate() -> None:
    """`python simulate.py stage=<name> [overrides]` (see conf/simulate.yaml)."""
    run_hydra(_simulate, "simulate")


def train() -> None:
    """`python train.py [overrides]`: the band-gap GNN (conf/train.yaml) or, with `--config-name train_mlip` or an
    experiment that configures `mlip`, the MACE stage (conf/train_mlip.yaml)."""
    config_name, sys.argv[1:] = train_config(sys.argv[1:])
    run_hydra(_train, config_name)


def import_vasp() -> None:
    """`capml-import import.root=DIR [overrides]`: `simulate.py stage=import_vasp`."""
    sys.argv.insert(1, "stage=import_vasp")
    simulate()
