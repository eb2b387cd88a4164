"""The soft-mode check: a Γ mode's frequency from the forces (and the energy) of one displaced structure, against
phonopy's harmonic frequency of the same mode (an independent route: finite differences of every atom and the
dynamical matrix), and the sign convention on an analytic unstable spring."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write
from phonopy.physical_units import get_physical_units

from capml.errors import InputError
from capml.mlip.soft_modes import main, soft_mode_probes, soft_mode_table
from capml.phonons import mode_frequency_from_forces, mode_probe


def _cell():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
    atoms.symbols[0] = "Au"  # two masses, fewer degeneracies
    atoms.info.update(structure_id="cuau", x=0.0)
    return atoms


def test_the_frequency_from_forces_and_energy_matches_phonopys_harmonic_mode():
    atoms = _cell()
    probes = soft_mode_probes(atoms, EMT(), n_modes=3, max_displacement_A=0.002)
    assert len(probes) == 3
    table = soft_mode_table(probes, {}, {"emt": EMT()})
    for probe, (_, row) in zip(probes, table.iterrows()):
        harmonic = probe.info["probe_harmonic_THz"]
        assert abs(harmonic) > 0.05  # translations skipped
        assert row["frequency_forces_THz"] == pytest.approx(harmonic, rel=2e-3)
        assert row["frequency_energy_THz"] == pytest.approx(harmonic, rel=5e-3)
        # the largest displacement is the one asked for
        u = probe.positions - atoms.positions
        assert np.linalg.norm(u, axis=1).max() == pytest.approx(0.002)


def test_an_unstable_spring_gives_a_negative_frequency_of_the_analytic_size():
    atoms = _cell()
    k = 0.5  # eV/Å², pushing outwards: V = -k u²/2 on every coordinate
    e = np.zeros((len(atoms), 3))
    e[1, 2] = 1.0  # a mode on one atom along z
    probe, q = mode_probe(atoms, e.ravel(), 0.01)
    forces = k * (probe.positions - atoms.positions)
    expected = -np.sqrt(k / atoms.get_masses()[1]) * get_physical_units().DefaultToTHz
    assert mode_frequency_from_forces(forces, atoms.get_masses(), e, q) == pytest.approx(expected)


def test_dft_labels_of_the_probes_are_read_by_structure_id(tmp_path):
    atoms = _cell()
    probes = soft_mode_probes(atoms, EMT(), n_modes=1, max_displacement_A=0.002)
    labelled = []
    for structure in (atoms, probes[0]):  # EMT standing in for the labeller's output file
        frame = structure.copy()
        frame.calc = EMT()
        frame.info["REF_energy"] = frame.get_potential_energy()
        frame.arrays["REF_forces"] = frame.get_forces()
        frame.calc = None
        labelled.append(frame)
    write(tmp_path / "labels.extxyz", labelled)
    table = soft_mode_table(probes, {"emt": [tmp_path / "labels.extxyz"]}, {})
    assert table.loc[0, "frequency_energy_THz"] == pytest.approx(probes[0].info["probe_harmonic_THz"], rel=5e-3)


def test_a_structure_that_is_no_probe_is_refused(tmp_path, capsys):
    atoms = _cell()
    with pytest.raises(InputError, match="probe_q_A_sqrt_amu"):
        soft_mode_table([atoms], {}, {"emt": EMT()})
    write(tmp_path / "p.extxyz", atoms)
    assert main(["table", str(tmp_path / "p.extxyz")]) == 2
    assert "expected a structure written by" in capsys.readouterr().err
