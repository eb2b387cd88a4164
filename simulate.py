"""capml simulation entry point: `python simulate.py stage=<name> [overrides]` (see conf/simulate.yaml)."""

import hydra
from omegaconf import DictConfig

from capml.cli import CONFIG_DIR, one_line_errors, run_hydra
from capml.simulate.stages import run_stage


@hydra.main(config_path=str(CONFIG_DIR), config_name="simulate", version_base="1.3")
@one_line_errors
def main(cfg: DictConfig):
    return run_stage(cfg)


if __name__ == "__main__":
    run_hydra(main, "simulate")
