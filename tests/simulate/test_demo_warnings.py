"""`make demo` (``simulate.py``, stage=demo) prints no Python warning on a new user's console: the same program on
the small MACE and the test GNN, at the tiny settings of the pipeline tests, with Python's default warning filters.
Every stage runs: relaxations (scipy's logm through ASE's cell filter), harmonic and renormalised phonons (phonopy's
primitive cell), MD, the GNN's sparse adjacency (torch) and the gaps."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from capml.cli import ROOT

from .conftest import tiny_pipeline_overrides

PYTHON_WARNING = re.compile(r":\d+: \w*Warning: ")  # warnings.showwarning: "<file>:<line>: <Category>: <message>"


def test_demo_prints_no_python_warning(tmp_path, mace_model_path, trained_run):
    tiny = tiny_pipeline_overrides(mace_model_path, trained_run["out"] / "checkpoints" / "best.ckpt")
    # every stage still runs on two end members at one temperature
    overrides = [o for o in tiny if not o.startswith(("simulate.x=", "simulate.temperature="))]
    overrides += ["simulate.x=[0,1]", "simulate.temperature=[300]", f"workdir={tmp_path / 'demo'}"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"} | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "simulate.py"), *overrides], cwd=tmp_path, capture_output=True,
                          text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "capml demo: results in" in done.stdout
    warned = [line[-400:] for line in done.stderr.splitlines() if PYTHON_WARNING.search(line)]
    assert warned == []


def test_the_pattern_finds_a_warning_behind_a_progress_bar():
    line = ("relax configurations:   0%|          | 0/2 [00:00<?, ?config/s]/x/scipy/_lib/_util.py:1181: "
            "RuntimeWarning: logm result may be inaccurate")
    assert PYTHON_WARNING.search(line) and not PYTHON_WARNING.search("WARNING capml.simulate: 2 runs not converged")
