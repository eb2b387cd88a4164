import numpy as np
import pytest

from capml.errors import InputError
from capml.structures.prototypes import (antiperovskite, decorated_supercell, mixed_sites, perovskite,
                                         vegard_lattice_constant)


def test_antiperovskite_geometry():
    atoms = antiperovskite("Ag", "S", "Br", 4.793)
    assert atoms.get_chemical_formula() == "Ag3BrS"
    # S sits in an Ag6 octahedron at a/2
    d = atoms.get_distances(1, [2, 3, 4], mic=True)
    assert np.allclose(d, 4.793 / 2)


def test_perovskite_geometry():
    """CsPbBr3: Pb in a Br6 octahedron at a/2, Cs in a Br12 cuboctahedron at a/sqrt(2)."""
    a = 5.87
    atoms = perovskite("Cs", "Pb", "Br", a).repeat((2, 2, 2))
    symbols = np.array(atoms.get_chemical_symbols())
    assert atoms.get_chemical_formula("metal", empirical=True) == "CsPbBr3" and len(atoms) == 40
    br = np.flatnonzero(symbols == "Br")
    for centre, count, distance in (("Pb", 6, a / 2), ("Cs", 12, a / np.sqrt(2))):
        d = np.sort(atoms.get_distances(int(np.flatnonzero(symbols == centre)[0]), br, mic=True))
        assert np.allclose(d[:count], distance) and d[count] > distance + 0.1


def test_vegard_and_supercell_composition():
    lattice = {"Br": 4.793, "I": 4.869}
    occupation = [True, False, True, False, False, False, False, False]
    atoms = decorated_supercell(antiperovskite("Ag", "S", "I", 1.0), "I", ["Br", "I"], lattice, [2, 2, 2], occupation)
    assert len(atoms) == 40
    assert atoms.get_chemical_symbols().count("Br") == 2
    assert atoms.info["x"] == pytest.approx(0.25)
    assert atoms.cell.lengths() == pytest.approx([2 * vegard_lattice_constant(0.25, 4.793, 4.869)] * 3)
    assert len(mixed_sites(atoms, ["Br", "I"])) == 8


def test_without_lattice_constants_the_parent_cell_is_kept():
    from ase.build import bulk

    si = bulk("Si", "diamond", a=5.43)
    atoms = decorated_supercell(si, "Si", ["Ge", "Si"], None, [2, 1, 1], [True, False, False, False])
    assert np.array_equal(atoms.cell[:], si.repeat((2, 1, 1)).cell[:])
    assert atoms.get_chemical_symbols() == ["Ge", "Si", "Si", "Si"]


def test_bad_inputs():
    with pytest.raises(InputError, match="lattice_constant"):
        antiperovskite("Ag", "S", "Br", -1)
    with pytest.raises(InputError, match="lattice_constant"):
        perovskite("Cs", "Pb", "Br", 0)
    with pytest.raises(InputError, match="composition"):
        vegard_lattice_constant(1.5, 1, 2)
    with pytest.raises(InputError, match="occupation"):
        decorated_supercell(antiperovskite("Ag", "S", "I", 1.0), "I", ["Br", "I"], {"Br": 4.8, "I": 4.9}, [1, 1, 1],
                            [True, False])
    with pytest.raises(InputError, match="lattice_constants"):
        decorated_supercell(antiperovskite("Ag", "S", "I", 1.0), "I", ["Cl", "I"], {"Br": 4.8, "I": 4.9}, [1, 1, 1])
