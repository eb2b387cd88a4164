"""capml simulation entry point: `python simulate.py stage=<name> [overrides]` (see conf/simulate.yaml); the same
program as the console script `capml-simulate` (capml/entry_points.py)."""

from capml.entry_points import simulate

if __name__ == "__main__":
    simulate()
