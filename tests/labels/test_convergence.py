"""The label convergence table against numbers computed by hand on EMT-labelled copper cells."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from capml.errors import InputError
from capml.io.contract import write_dataset
from capml.labels.convergence import convergence_table, main, setting_summary


def labelled(shift_eV=0.0, shifts_of=None, force_noise=0.0):
    frames = []
    for k, (sid, role) in enumerate([("ideal", "ideal"), ("min", "minimum"), ("hot", "md")]):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.positions += np.random.default_rng(k).normal(scale=0.05 * k, size=atoms.positions.shape)
        atoms.calc = EMT()
        energy = atoms.get_potential_energy() + shift_eV + (shifts_of or {}).get(sid, 0.0)
        forces = atoms.get_forces() + force_noise * (k > 0)
        out = atoms.copy()
        out.calc = None
        out.info.update(structure_id=sid, x=0.0, temperature=300.0 * (role == "md"), kconv_role=role,
                        REF_energy=energy, REF_stress=atoms.get_stress(voigt=False), gap_pbesol=0.5 + 0.01 * k)
        out.arrays["REF_forces"] = forces
        frames.append(out)
    return frames


def test_offsets_cancel_and_errors_are_the_ones_put_in(tmp_path):
    files = {"ref": labelled(), "offset": labelled(shift_eV=7.0), "worse": labelled(shifts_of={"min": 0.012},
                                                                                     force_noise=0.05)}
    settings = {}
    for name, frames in files.items():
        write_dataset(tmp_path / f"{name}.extxyz", frames)
        settings[name] = [tmp_path / f"{name}.extxyz"]
    table = convergence_table(files["ref"], settings, reference="ref").set_index(["setting", "structure_id"])
    # a constant shift of every total energy (another k-mesh's offset) is no error
    assert table.loc[("offset", "min"), "energy_error_meV_atom"] == pytest.approx(0.0, abs=1e-9)
    assert bool(table.loc[("offset", "hot"), "converged"])
    # 12 meV on a 4-atom minimum is 3 meV/atom off; a 0.05 eV/Å shift of every force component is a 0.05 MAE
    assert table.loc[("worse", "min"), "energy_error_meV_atom"] == pytest.approx(3.0, abs=1e-9)
    assert table.loc[("worse", "hot"), "force_mae_eV_A"] == pytest.approx(0.05, abs=1e-12)
    assert not table.loc[("worse", "min"), "converged"] and not table.loc[("worse", "hot"), "converged"]
    assert table.loc[("ref", "min"), "energy_vs_ideal_meV_atom"] > 0  # a distorted copper cell lies above fcc


def test_command_line_refuses_a_missing_file_in_one_line(tmp_path, capsys):
    write_dataset(tmp_path / "s.extxyz", labelled())
    assert main([str(tmp_path / "s.extxyz"), "--setting", f"a={tmp_path / 'none.extxyz'}", "--reference", "a"]) == 2
    assert "none.extxyz: no such dataset file" in capsys.readouterr().err
    with pytest.raises(InputError, match="reference setting 'b'"):
        convergence_table(labelled(), {"a": [tmp_path / "s.extxyz"]}, reference="b")


def test_a_structure_is_measured_from_its_own_ideal_cell_and_the_summary_takes_the_worst(tmp_path):
    ref, worse = labelled(), labelled(shifts_of={"min": 0.012}, force_noise=0.05)
    for frames, seconds in ((ref, 600.0), (worse, 60.0)):
        second_ideal = frames[0].copy()  # a second ideal cell of the same composition, 40 meV higher
        second_ideal.info.update(structure_id="ideal2", REF_energy=frames[0].info["REF_energy"] + 0.04)
        frames.append(second_ideal)
        frames[1].info["kconv_ideal"] = "ideal2"
        for frame in frames:
            frame.info["label_seconds"] = seconds
    settings = {}
    for name, frames in (("ref", ref), ("worse", worse)):
        write_dataset(tmp_path / f"{name}.extxyz", frames)
        settings[name] = [tmp_path / f"{name}.extxyz"]
    table = convergence_table(ref, settings, reference="ref")
    rows = table.set_index(["setting", "structure_id"])
    by_hand = 1000 * (ref[1].info["REF_energy"] - ref[0].info["REF_energy"] - 0.04) / len(ref[1])
    assert rows.loc[("ref", "min"), "ideal_id"] == "ideal2"
    assert rows.loc[("ref", "min"), "energy_vs_ideal_meV_atom"] == pytest.approx(by_hand)
    assert rows.loc[("ref", "hot"), "ideal_id"] == "ideal"  # no kconv_ideal: the composition's first ideal cell
    summary = setting_summary(table).set_index("setting")
    assert summary.loc["worse", "max_energy_error_meV_atom"] == pytest.approx(3.0)
    assert summary.loc["worse", "max_force_mae_eV_A"] == pytest.approx(0.05)
    assert summary.loc["worse", "label_minutes"] == pytest.approx(1.0)
    assert not summary.loc["worse", "converged"] and summary.loc["ref", "converged"]


def test_a_model_is_one_more_setting_labelled_on_the_structures_themselves(tmp_path):
    ref = labelled()
    write_dataset(tmp_path / "ref.extxyz", ref)
    structures = [a.copy() for a in ref]
    for atoms in structures:  # a structure file carries no labels
        for key in ("REF_energy", "REF_stress", "gap_pbesol"):
            del atoms.info[key]
        del atoms.arrays["REF_forces"]
    table = convergence_table(structures, {"ref": [tmp_path / "ref.extxyz"]}, "ref",
                              models={"emt": EMT()}).set_index(["setting", "structure_id"])
    # the reference labels are EMT's too: the model reproduces them, distortion energies included
    assert table.loc[("emt", "min"), "energy_error_meV_atom"] == pytest.approx(0.0, abs=1e-6)
    assert table.loc[("emt", "hot"), "force_mae_eV_A"] == pytest.approx(0.0, abs=1e-6)
    assert table.loc[("emt", "min"), "energy_vs_ideal_meV_atom"] == pytest.approx(
        table.loc[("ref", "min"), "energy_vs_ideal_meV_atom"])
    with pytest.raises(InputError, match="the name of a --setting too"):
        convergence_table(structures, {"ref": [tmp_path / "ref.extxyz"]}, "ref", models={"ref": EMT()})
