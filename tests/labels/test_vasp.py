"""The VASP reader on the real vasprun.xml in ../shared/data/vasp (its README gives the expected values)."""

import numpy as np
import pytest

from capml.errors import InputError
from capml.io.dataset import validate_frames
from capml.labels.vasp import read_vasp

KBAR_PER_EV_A3 = 1602.1766208


def test_vasprun_last_ionic_step(shared_dir):
    atoms = read_vasp(shared_dir / "data/vasp/BI_relax_vasprun.xml")
    assert atoms.get_chemical_formula() == "B2I2"
    assert atoms.info["REF_energy"] == pytest.approx(-10.19261458, abs=1e-8)
    forces = atoms.arrays["REF_forces"]
    assert np.abs(forces).max() == pytest.approx(0.0078, abs=1e-4)
    assert np.abs(forces[:, :2]).max() < 1e-6  # all along z
    # VASP prints -0.458/-0.741 kbar (its sign); the contract uses ASE's sign convention in eV/Å^3
    stress_kbar = atoms.info["REF_stress"] * KBAR_PER_EV_A3
    assert np.diag(stress_kbar) == pytest.approx([0.458, 0.458, 0.741], abs=2e-3)
    # from eigenvalues and occupations (> 0.5 filled), not the smeared DOS: 0.541 eV, indirect
    assert atoms.info["gap_pbesol"] == pytest.approx(0.541, abs=1e-3)
    validate_frames([atoms], gaps=["pbesol"])


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_vasp(tmp_path / "vasprun.xml")
    bad = tmp_path / "vasprun.xml"
    bad.write_text("<modeling><generator>")
    with pytest.raises(InputError, match="vasprun.xml"):
        read_vasp(bad)
