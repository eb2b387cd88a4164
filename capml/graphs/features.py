"""Node features from pymatgen's periodic table and the CGCNN Gaussian expansion of edge distances.

Per element: atomic number Z, atomic mass (amu), empirical atomic radius (Å) and Pauling
electronegativity, as in the paper. Values come from pymatgen (``pymatgen.core.periodic_table``),
a maintained source, never typed in by hand.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import torch
from ase.data import chemical_symbols

from capml.errors import InputError

NODE_FEATURES = ("Z", "atomic_mass_amu", "atomic_radius_A", "electronegativity_pauling")
MAX_Z = 118


@lru_cache(maxsize=1)
def element_table() -> np.ndarray:
    """(MAX_Z + 1, 4) float table indexed by Z; NaN where pymatgen has no value (e.g. He's electronegativity)."""
    from pymatgen.core.periodic_table import Element

    table = np.full((MAX_Z + 1, len(NODE_FEATURES)), np.nan)
    with warnings.catch_warnings():
        # pymatgen warns for every element without a Pauling electronegativity; NaN is what we want here
        warnings.simplefilter("ignore")
        for z in range(1, MAX_Z + 1):
            element = Element.from_Z(z)
            radius = element.atomic_radius
            table[z] = (
                z,
                float(element.atomic_mass),
                float(radius) if radius is not None else np.nan,
                float(element.X),
            )
    return table


def node_features(numbers: np.ndarray, where: str = "<atoms>") -> np.ndarray:
    """(n_atoms, 4) features of atomic numbers ``numbers``; an element without data raises InputError."""
    numbers = np.asarray(numbers, dtype=np.int64)
    if numbers.size and (numbers.min() < 1 or numbers.max() > MAX_Z):
        bad = int(numbers[(numbers < 1) | (numbers > MAX_Z)][0])
        raise InputError(f"{where}: atomic number {bad} is not a chemical element (expected 1..{MAX_Z})")
    features = element_table()[numbers]
    missing = ~np.isfinite(features)
    if missing.any():
        atom, column = np.argwhere(missing)[0]
        raise InputError(
            f"{where}: element {chemical_symbols[numbers[atom]]} has no {NODE_FEATURES[column]} in pymatgen's "
            f"periodic table; node features need {', '.join(NODE_FEATURES)}"
        )
    return features


class GaussianExpansion(torch.nn.Module):
    """CGCNN edge features: exp(-(d - mu_k)^2 / width^2) on ``n_gaussians`` centres evenly spaced in [0, cutoff]."""

    def __init__(self, cutoff_A: float, n_gaussians: int):
        super().__init__()
        centres = torch.linspace(0.0, cutoff_A, n_gaussians)
        self.register_buffer("centres", centres)
        self.width_A = float(centres[1] - centres[0]) if n_gaussians > 1 else float(cutoff_A)

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        return torch.exp(-((distance[:, None] - self.centres) / self.width_A) ** 2)
