"""capml training entry point: `python train.py [overrides]` trains the band-gap GNN (task=gnn, see
conf/train.yaml); `task=mlip` runs the MACE fine-tune stage. `-m` runs sweeps (conf/hparams_search/). The same
program as the console script `capml-train` (capml/entry_points.py)."""

from capml.entry_points import train

if __name__ == "__main__":
    train()
