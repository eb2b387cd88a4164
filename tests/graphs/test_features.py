"""Node features against independent tables (ASE masses, literature Pauling values) and their errors."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers

from capml.errors import InputError
from capml.graphs.build import atoms_to_graph
from capml.graphs.features import NODE_FEATURES, GaussianExpansion, node_features

# Pauling electronegativities (CRC Handbook): independent of pymatgen's table
PAULING = {"Ag": 1.93, "S": 2.58, "Br": 2.96, "I": 2.66}


def test_features_of_the_system_elements():
    symbols = list(PAULING)
    numbers = np.array([atomic_numbers[s] for s in symbols])
    features = node_features(numbers)
    assert features.shape == (4, len(NODE_FEATURES))
    assert np.array_equal(features[:, 0], numbers)
    assert np.allclose(features[:, 1], atomic_masses[numbers], rtol=1e-3)  # IUPAC revisions differ in the 4th digit
    assert np.allclose(features[:, 3], [PAULING[s] for s in symbols])
    # empirical radii (Slater 1964): the anion grows Br < I, the S2- site is the smallest
    radius = dict(zip(symbols, features[:, 2]))
    assert radius["S"] < radius["Br"] < radius["I"] and 1.0 <= radius["Ag"] <= 2.0


def test_element_without_data_names_element_and_structure():
    atoms = Atoms("AgHe", positions=[[0, 0, 0], [2, 0, 0]], cell=np.eye(3) * 6, pbc=True)
    with pytest.raises(InputError, match=r"md\.extxyz: frame 12: element He has no atomic_radius_A"):
        atoms_to_graph(atoms, where="md.extxyz: frame 12")


def test_gaussian_expansion_peaks_at_its_centres():
    expand = GaussianExpansion(cutoff_A=5.0, n_gaussians=11)
    out = expand(torch.tensor([0.0, 2.5, 5.0]))
    assert out.shape == (3, 11)
    assert out.argmax(dim=1).tolist() == [0, 5, 10]
    assert torch.allclose(out.max(dim=1).values, torch.ones(3))
