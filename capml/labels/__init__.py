"""Reference labels: GPAW, tblite GFN2-xTB, any ASE calculator, VASP readers; resumable runs."""

from capml.labels.bandgap import BandGap, ase_calculator_gap, band_gap
from capml.labels.base import Labeller, Labels
from capml.labels.run import LabelSummary, run_labels
from capml.labels.vasp import read_vasp

__all__ = ["BandGap", "LabelSummary", "Labeller", "Labels", "ase_calculator_gap", "band_gap", "read_vasp",
           "run_labels"]
