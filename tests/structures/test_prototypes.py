import numpy as np
import pytest

from capml.errors import InputError
from capml.structures.prototypes import antiperovskite, halide_sites, mixed_halide_supercell, vegard_lattice_constant


def test_antiperovskite_geometry():
    atoms = antiperovskite("Ag", "S", "Br", 4.793)
    assert atoms.get_chemical_formula() == "Ag3BrS"
    # S sits in an Ag6 octahedron at a/2
    d = atoms.get_distances(1, [2, 3, 4], mic=True)
    assert np.allclose(d, 4.793 / 2)


def test_vegard_and_supercell_composition():
    lattice = {"Br": 4.793, "I": 4.869}
    occupation = [True, False, True, False, False, False, False, False]
    atoms = mixed_halide_supercell("Ag", "S", ["Br", "I"], lattice, [2, 2, 2], occupation)
    assert len(atoms) == 40
    assert atoms.get_chemical_symbols().count("Br") == 2
    assert atoms.info["x"] == pytest.approx(0.25)
    assert atoms.cell.lengths() == pytest.approx([2 * vegard_lattice_constant(0.25, 4.793, 4.869)] * 3)
    assert len(halide_sites(atoms, ["Br", "I"])) == 8


def test_bad_inputs():
    with pytest.raises(InputError, match="lattice_constant"):
        antiperovskite("Ag", "S", "Br", -1)
    with pytest.raises(InputError, match="composition"):
        vegard_lattice_constant(1.5, 1, 2)
    with pytest.raises(InputError, match="occupation"):
        mixed_halide_supercell("Ag", "S", ["Br", "I"], {"Br": 4.8, "I": 4.9}, [1, 1, 1], [True, False])
