"""capml.metrics: MAE, RMSE and R² against hand-computed values, and parity figures drawn without pyplot."""

import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure

from capml.cli import ROOT
from capml.metrics import ParityPanel, parity_figure, regression_metrics


def test_regression_metrics_by_hand():
    ref, pred = np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.0, 2.0])
    m = regression_metrics(ref, pred)
    assert m["n"] == 3
    assert m["mae"] == pytest.approx(0.5)
    assert m["rmse"] == pytest.approx(np.sqrt(1.25 / 3))
    assert m["r2"] == pytest.approx(1 - 1.25 / 2.0)


def test_arrays_are_compared_value_by_value_and_r2_needs_spread():
    forces = np.arange(12.0).reshape(4, 3)
    m = regression_metrics(forces, forces + 0.1)
    assert m["n"] == 12 and m["mae"] == pytest.approx(0.1) and m["rmse"] == pytest.approx(0.1)
    assert np.isnan(regression_metrics(np.ones(3), np.zeros(3))["r2"])


def test_parity_panels_span_their_values_or_a_shared_range():
    wide = ParityPanel({"": (np.array([0.0, 10.0]), np.array([1.0, 9.0]))}, "reference", "predicted", "wide")
    narrow = ParityPanel({"a": (np.array([1.0, 2.0]), np.array([1.5, 2.5]))}, "reference", "predicted")
    fig = parity_figure([wide, narrow])
    assert isinstance(fig, Figure)
    (lo, hi), (lo2, hi2) = (ax.get_xlim() for ax in fig.axes)
    assert lo < 0 < 10 < hi and lo2 < 1 < 2.5 < hi2 < 3
    assert fig.axes[0].get_legend() is None and fig.axes[1].get_legend() is not None
    shared = parity_figure([wide, narrow], title="both", shared_range=True)
    assert shared.axes[0].get_xlim() == shared.axes[1].get_xlim() == shared.axes[1].get_ylim()


def test_importing_metrics_leaves_pyplot_alone():
    code = "import sys, capml.metrics; assert 'matplotlib.pyplot' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)
