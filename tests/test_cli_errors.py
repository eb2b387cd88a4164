"""Bad input through the entry point: one line naming file/field and what was expected, non-zero exit,
and no partial output file."""

from pathlib import Path

import numpy as np
import pytest

from tests.cli_runner import run_cli
from ase.build import bulk

from capml.io.contract import write_dataset

ROOT = Path(__file__).resolve().parents[1]


def simulate(*args):
    run = run_cli("simulate.py", *args, env={"CAPML_TEST_SEED": "3"})  # a fresh process, forked after the imports
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    return run.returncode, lines


def labelled_cell(**changes):
    atoms = bulk("Cu", cubic=True)
    atoms.info.update(REF_energy=-1.0, REF_stress=np.zeros((3, 3)), structure_id="s0")
    atoms.arrays["REF_forces"] = np.zeros((4, 3))
    for key, value in changes.items():
        if value is None:
            atoms.info.pop(key, None)
        else:
            atoms.arrays[key] = value
    return atoms


def assert_one_line(code, lines, *fragments):
    assert code != 0
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_structure_file(tmp_path):
    code, lines = simulate("stage=label", "labels=ase", f"workdir={tmp_path}",
                           f"label.structures={tmp_path}/missing.extxyz")
    assert_one_line(code, lines, "missing.extxyz", "not found")
    assert not (tmp_path / "dataset.extxyz").exists()


def test_corrupt_structure_file(tmp_path):
    (tmp_path / "structures.extxyz").write_text("40\nLattice=\"1 0 0\" Properties=species:S:1:pos:R:3\nAg 0 0\n")
    code, lines = simulate("stage=label", "labels=ase", f"workdir={tmp_path}")
    assert_one_line(code, lines, "structures.extxyz", "cannot read")
    assert not (tmp_path / "dataset.extxyz").exists()


def test_extxyz_without_required_keys(tmp_path):
    write_dataset(tmp_path / "d.extxyz", [labelled_cell(REF_energy=None)])
    code, lines = simulate("stage=validate", f"workdir={tmp_path}", f"validate.path={tmp_path}/d.extxyz")
    assert_one_line(code, lines, "d.extxyz", "frame 0", "REF_energy")


def test_nan_in_forces(tmp_path):
    forces = np.zeros((4, 3))
    forces[1, 2] = np.nan
    write_dataset(tmp_path / "d.extxyz", [labelled_cell(REF_forces=forces)])
    code, lines = simulate("stage=validate", f"workdir={tmp_path}", f"validate.path={tmp_path}/d.extxyz")
    assert_one_line(code, lines, "d.extxyz", "REF_forces", "NaN")


def test_structures_without_resume_key(tmp_path):
    atoms = bulk("Cu", cubic=True)
    write_dataset(tmp_path / "structures.extxyz", [atoms])
    code, lines = simulate("stage=label", "labels=ase", f"workdir={tmp_path}")
    assert_one_line(code, lines, "structures.extxyz", "structure_id")
    assert not (tmp_path / "dataset.extxyz").exists()


@pytest.mark.parametrize("override,fragment", [("label.nonexistent_key=1", "nonexistent_key"),
                                               ("labels=nonexistent_backend", "nonexistent_backend")])
def test_unknown_config_key(tmp_path, override, fragment):
    code, lines = simulate(override, f"workdir={tmp_path}")
    assert_one_line(code, lines, fragment)
    assert not any(tmp_path.iterdir())


def test_missing_end_member_phonons(tmp_path):
    code, lines = simulate("stage=sample", f"workdir={tmp_path}", f"system.end_member_phonons.Br={tmp_path}/no.yaml")
    assert_one_line(code, lines, "no.yaml", "not found")
    assert not (tmp_path / "structures.extxyz").exists()


def test_a_refused_stage_keeps_what_earlier_stages_computed(tmp_path):
    """`stage=gaps` with a missing gap model, in a folder where configurations and MD already ran: one line, and
    their results stay (only the refused run's own records go)."""
    earlier = {"configurations/energies.csv": "config_id\n", "md/md_state.pt": "x", "phonons/a/stability.json": "{}",
               "md_check/dataset.extxyz.settings.json": "{}"}
    for name, text in earlier.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    code, lines = simulate("stage=gaps", f"workdir={tmp_path}", f"simulate.gnn_checkpoint={tmp_path}/none.ckpt")
    assert_one_line(code, lines, "none.ckpt", "not found")
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == sorted(earlier)


def test_words_and_interpolations_where_numbers_are_expected(tmp_path):
    """`simulate.gaps.discard_fs=auto` is a documented value, and `${oc.env:...}` resolves at run time: neither is
    refused as 'not a number' (the run then stops at the missing file, the first real problem)."""
    for override in ("simulate.gaps.discard_fs=auto", "seed=${oc.env:CAPML_TEST_SEED}"):
        code, lines = simulate("stage=validate", f"workdir={tmp_path}", f"validate.path={tmp_path}/none.extxyz",
                               override)
        assert_one_line(code, lines, "none.extxyz", "not found")
