"""Regression metrics and parity plots, one implementation for every model capml reports on: GNN gap models
(capml.models) and MACE energies, forces and stresses (capml.mlip).

Plots are drawn on ``matplotlib.figure.Figure``, never pyplot, so importing capml never switches a notebook's
backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def regression_metrics(reference, predicted) -> dict:
    """n, MAE, RMSE and R² (NaN for fewer than two distinct references) of ``predicted`` against ``reference``, in
    their units; arrays of any shape are compared value by value."""
    reference, predicted = np.ravel(reference), np.ravel(predicted)
    error = predicted - reference
    total = np.sum((reference - reference.mean()) ** 2)
    return {"n": int(error.size), "mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error**2))),
            "r2": float(1 - np.sum(error**2) / total) if total > 0 else float("nan")}


@dataclass
class ParityPanel:
    """One parity panel: ``series`` maps a legend label ("" for none) to (reference, predicted) values."""

    series: Mapping[str, tuple]
    xlabel: str
    ylabel: str
    title: str = ""

    def value_range(self) -> tuple[float, float]:
        values = np.concatenate([np.ravel(v) for pair in self.series.values() for v in pair])
        return float(values.min()), float(values.max())


def draw_parity(ax: Axes, panel: ParityPanel, value_range: tuple[float, float] | None = None) -> None:
    """Predicted against reference on ``ax`` with the line y = x; square axes over ``value_range`` (default: the
    panel's values) widened by 5 % on each side."""
    lo, hi = value_range or panel.value_range()
    pad = 0.05 * (hi - lo + 1e-12)
    lo, hi = lo - pad, hi + pad
    for label, (reference, predicted) in panel.series.items():
        ax.scatter(reference, predicted, s=8, alpha=0.6, label=label or None)
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel=panel.xlabel, ylabel=panel.ylabel, title=panel.title)
    ax.set_aspect("equal")
    if any(panel.series):
        ax.legend(fontsize=7)


def parity_figure(panels: Sequence[ParityPanel], title: str = "", shared_range: bool = False) -> Figure:
    """One parity panel per entry of ``panels``, side by side; with ``shared_range`` (panels of one quantity, e.g.
    the splits of one model) every panel spans the values of all."""
    fig = Figure(figsize=(4.2 * len(panels), 4))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    ranges = [panel.value_range() for panel in panels]
    if shared_range:
        ranges = [(min(lo for lo, _ in ranges), max(hi for _, hi in ranges))] * len(panels)
    for ax, panel, value_range in zip(axes, panels, ranges):
        draw_parity(ax, panel, value_range)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
