"""capml training entry point: `python train.py [overrides]` trains the band-gap GNN (task=gnn, see
conf/train.yaml); `task=mlip` runs the MACE fine-tune stage. `-m` runs sweeps (conf/hparams_search/)."""

import hydra
from omegaconf import DictConfig

from capml.cli import CONFIG_DIR, one_line_errors, run_hydra


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
@one_line_errors
def main(cfg: DictConfig):
    if cfg.task == "mlip":
        from capml.mlip.train import run

        return run(cfg)
    from capml.models.train import run

    return run(cfg)


if __name__ == "__main__":
    run_hydra(main, "train")
