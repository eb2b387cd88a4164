"""capml training entry point: `python train.py [overrides]` trains the band-gap GNN (conf/train.yaml);
`--config-name train_mlip`, or an experiment that configures `mlip` (experiment=mlip_finetune, mlip_base), runs the
MACE stage (conf/train_mlip.yaml). `-m` runs sweeps (conf/hparams_search/), `debug=fdr` one batch of everything
(conf/debug/). The same program as the console script `capml-train` (capml/entry_points.py)."""

from capml.entry_points import train

if __name__ == "__main__":
    train()
