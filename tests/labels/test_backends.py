"""Real electronic-structure backends at low settings: GPAW (PBEsol + HSE06 gap) and tblite GFN2-xTB."""

import numpy as np
import pytest
from ase.dft.bandgap import bandgap

from capml.io.dataset import validate_frames
from capml.labels.gpaw import GPAWLabeller
from capml.labels.tblite import TBLiteLabeller
from capml.structures.prototypes import antiperovskite


@pytest.fixture(scope="module")
def cell():
    atoms = antiperovskite("Ag", "S", "Br", 4.793)
    atoms.rattle(0.02, seed=1)
    return atoms


def test_gpaw_pbesol_and_hybrid_gap(cell):
    labeller = GPAWLabeller(ecut_eV=250, kpts_size=[2, 2, 2], smearing_eV=0.01)
    labels = labeller.label(cell, extras=frozenset({"hse06"}))
    frame = labels.apply_to(cell)
    validate_frames([frame], gaps=["pbesol", "hse06"])
    assert np.abs(frame.arrays["REF_forces"]).max() > 1e-3  # the rattle gives real forces
    assert abs(frame.arrays["REF_forces"].sum(axis=0)).max() < 0.05  # nearly translation invariant
    # an independent gap: ASE's bandgap from the same calculator's eigenvalues and Fermi level
    atoms = cell.copy()
    atoms.calc = labeller.calculator(atoms)
    atoms.get_potential_energy()
    reference, _, _ = bandgap(atoms.calc, output=None)
    assert frame.info["gap_pbesol"] == pytest.approx(reference, abs=1e-3)
    assert 0.2 < frame.info["gap_pbesol"] < 2.5
    assert 0.2 < frame.info["gap_hse06"] < 4.0
    settings = labeller.settings()
    assert settings["pbesol"]["ecut_eV"] == 250 and settings["hse06"]["xc"] == "HSE06"


def test_tblite_single_point(cell):
    labels = TBLiteLabeller().label(cell)
    frame = labels.apply_to(cell)
    validate_frames([frame], gaps=["gfn2"])
    assert frame.info["REF_energy"] < 0
    assert frame.info["gap_gfn2"] > 0
    # forces are minus the energy gradient: a finite-difference check on one coordinate
    h = 1e-3
    energies = []
    for sign in (1, -1):
        moved = cell.copy()
        moved.positions[1, 0] += sign * h
        energies.append(TBLiteLabeller().label(moved).energy_eV)
    assert frame.arrays["REF_forces"][1, 0] == pytest.approx(-(energies[0] - energies[1]) / (2 * h), abs=2e-3)
