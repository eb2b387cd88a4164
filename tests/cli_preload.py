"""Imported once by the fork server of tests/cli_runner.py: the heavy modules every simulate.py/train.py run needs.
Not Lightning: a run imports it after Hydra has set up logging, and imported before, its loggers print to stderr."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import ase.io  # noqa: E402,F401
import hydra  # noqa: E402,F401
import numpy  # noqa: E402,F401
import pandas  # noqa: E402,F401
import torch  # noqa: E402,F401

import mace.modules  # noqa: E402,F401
import torch_geometric  # noqa: E402,F401

import capml.cli  # noqa: E402,F401
import capml.entry_points  # noqa: E402,F401
