"""Resumable labelling: interrupted (killed) runs continue, failures are recorded once."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.cli_runner import run_cli
from ase.build import bulk
from ase.calculators.emt import EMT

from capml.errors import InputError
from capml.io.contract import read_dataset, read_settings, write_dataset
from capml.labels.ase_calc import ASECalculatorLabeller
from capml.io.extxyz import read_failures
from capml.labels.run import run_labels

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def structures(n, bad=()):
    frames = []
    for i in range(n):
        atoms = bulk("Cu", cubic=True).repeat(2)
        atoms.rattle(0.05, seed=i)
        if i in bad:
            atoms[0].symbol = "Si"  # EMT has no Si parameters: this calculation fails
        atoms.info["structure_id"] = f"s{i:02d}"
        frames.append(atoms)
    return frames


def test_limit_then_resume_gives_the_same_labels(tmp_path):
    frames = structures(6)
    labeller = ASECalculatorLabeller(EMT, fidelity="emt")
    out = tmp_path / "d.extxyz"
    first = run_labels(frames, out, labeller, limit=2)
    assert (first.labelled, first.skipped) == (2, 0)
    second = run_labels(frames, out, labeller)
    assert (second.labelled, second.skipped) == (4, 2)
    labelled = read_dataset(out)
    assert [a.info["structure_id"] for a in labelled] == [f"s{i:02d}" for i in range(6)]
    reference = frames[3].copy()
    reference.calc = EMT()
    assert labelled[3].info["REF_energy"] == pytest.approx(reference.get_potential_energy())
    assert np.allclose(labelled[3].arrays["REF_forces"], reference.get_forces())
    assert "emt" in read_settings(out).fidelities


def test_failures_are_recorded_and_not_retried(tmp_path):
    frames = structures(4, bad={1})
    labeller = ASECalculatorLabeller(EMT, fidelity="emt")
    out = tmp_path / "d.extxyz"
    summary = run_labels(frames, out, labeller)
    assert (summary.labelled, summary.failed) == (3, 1)
    failures = read_failures(out)
    assert list(failures) == ["s01"] and failures["s01"]["error"]
    again = run_labels(frames, out, labeller)
    assert (again.labelled, again.failed, again.skipped) == (0, 0, 4)


def test_settings_mismatch_refused(tmp_path):
    out = tmp_path / "d.extxyz"
    run_labels(structures(1), out, ASECalculatorLabeller(EMT, fidelity="emt", settings={"note": "a"}))
    with pytest.raises(InputError, match="differ"):
        run_labels(structures(2), out, ASECalculatorLabeller(EMT, fidelity="emt", settings={"note": "b"}))


def test_killed_run_resumes_from_the_command_line(tmp_path):
    """SIGKILL a real `simulate.py stage=label` mid-run, then rerun it: every structure labelled exactly once."""
    write_dataset(tmp_path / "structures.extxyz", structures(30))
    out = tmp_path / "dataset.extxyz"
    cmd = [sys.executable, "simulate.py", "stage=label", "labels=ase", f"workdir={tmp_path}"]
    # EMT with a pause per call, so the kill lands mid-run
    slow = ["labels.labeller.calculator._target_=slow_emt.SlowEMT"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.path.dirname(__file__)}
    proc = subprocess.Popen(cmd + slow, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or out.read_text().count("Lattice=") < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = out.read_text().count("Lattice=")
    assert 3 <= partial < 30
    done = subprocess.run(cmd + slow, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    ids = [a.info["structure_id"] for a in read_dataset(out)]
    assert sorted(ids) == [f"s{i:02d}" for i in range(30)]
    assert not read_failures(out)


def test_dropped_fidelity_is_recomputed_on_its_subset_only(tmp_path):
    """Labels found wrong for one fidelity are dropped; the resumed run relabels exactly the structures whose
    subset asks for it, replacing their frames, and leaves the rest alone."""
    from capml.io.dataset import drop_fidelity
    from capml.structures.prototypes import antiperovskite
    from tests.conftest import GFN2WithIPEA1Gap

    frames = []
    for i in range(4):
        atoms = antiperovskite("Ag", "S", "Br", 4.793).repeat((2, 2, 1))  # GFN2 SCF needs more than 5 atoms
        atoms.rattle(0.03, seed=i)
        atoms.info["structure_id"] = f"s{i}"
        frames.append(atoms)
    out = tmp_path / "d.extxyz"
    labeller = GFN2WithIPEA1Gap()
    run_labels(frames, out, labeller, subsets={"ipea1": 2})
    before = {a.info["structure_id"]: a for a in read_dataset(out)}
    assert {s for s, a in before.items() if "gap_ipea1" in a.info} == {"s0", "s2"}

    assert drop_fidelity(out, "ipea1") == 2
    assert "ipea1" not in read_settings(out).fidelities
    assert not any("gap_ipea1" in a.info for a in read_dataset(out))

    again = run_labels(frames, out, labeller, subsets={"ipea1": 2})
    assert (again.labelled, again.skipped) == (2, 2)
    after = read_dataset(out)
    # relabelled frames take their old places: the file stays in input order
    assert [a.info["structure_id"] for a in after] == ["s0", "s1", "s2", "s3"]
    for atoms in after:
        sid = atoms.info["structure_id"]
        assert ("gap_ipea1" in atoms.info) == (sid in ("s0", "s2"))
        if "gap_ipea1" in atoms.info:
            assert atoms.info["gap_ipea1"] == pytest.approx(before[sid].info["gap_ipea1"], abs=1e-6)
        assert atoms.info["REF_energy"] == pytest.approx(before[sid].info["REF_energy"], abs=1e-6)
    assert "ipea1" in read_settings(out).fidelities


def test_shards_label_disjoint_parts_and_merge_in_input_order(tmp_path):
    """Two shards label every structure exactly once; the merge keeps input order, settings and failures."""
    from capml.io.shards import merge_shards, shard_files

    frames = structures(7, bad={4})
    labeller = ASECalculatorLabeller(EMT, fidelity="emt")
    out = tmp_path / "d.extxyz"
    run_labels(frames, out, labeller, limit=1)          # s00 in the merged file before the shards start
    one = run_labels(frames, out, labeller, shard=(0, 2))
    two = run_labels(frames, out, labeller, shard=(1, 2))
    assert (one.labelled, one.skipped, one.failed) == (2, 1, 1)   # s02, s06 labelled; s00 done; s04 fails
    assert (two.labelled, two.skipped) == (3, 0)                    # s01, s03, s05
    assert len(shard_files(out)) == 2
    merged, total = merge_shards(out, [a.info["structure_id"] for a in frames])
    assert (merged, total) == (5, 6)
    assert shard_files(out) == []
    ids = [a.info["structure_id"] for a in read_dataset(out)]
    assert ids == ["s00", "s01", "s02", "s03", "s05", "s06"]
    assert list(read_failures(out)) == ["s04"]
    reference = frames[5].copy()
    reference.calc = EMT()
    assert read_dataset(out)[4].info["REF_energy"] == pytest.approx(reference.get_potential_energy())
    # nothing left to do, sharded or not
    assert run_labels(frames, out, labeller, shard=(1, 2)).labelled == 0
    assert run_labels(frames, out, labeller).labelled == 0


def test_merge_refuses_a_shard_still_running_and_mismatched_settings(tmp_path):
    from capml.io.shards import merge_shards, shard_lock, shard_path

    frames = structures(4)
    out = tmp_path / "d.extxyz"
    run_labels(frames, out, ASECalculatorLabeller(EMT, fidelity="emt"), shard=(0, 2))
    held = shard_lock(shard_path(out, 0, 2))
    with pytest.raises(InputError, match="still being labelled"):
        merge_shards(out)
    held.close()
    run_labels(frames, out, ASECalculatorLabeller(EMT, fidelity="emt", settings={"note": "b"}), shard=(1, 2))
    with pytest.raises(InputError, match="differ"):
        merge_shards(out)


def test_shard_option_from_the_command_line(tmp_path):
    """label.shard=i/n through simulate.py, then an unsharded run merges; a bad shard is one line, exit 2."""
    write_dataset(tmp_path / "structures.extxyz", structures(5))
    base = ["stage=label", "labels=ase", f"workdir={tmp_path}"]
    for shard in ("0/2", "1/2"):
        assert run_cli("simulate.py", *base, f"label.shard={shard}").returncode == 0
    assert run_cli("simulate.py", *base).returncode == 0
    ids = [a.info["structure_id"] for a in read_dataset(tmp_path / "dataset.extxyz")]
    assert ids == [f"s{i:02d}" for i in range(5)]
    bad = run_cli("simulate.py", *base, "label.shard=2/2")
    assert bad.returncode == 2 and "label.shard=2/2" in bad.stderr and "Traceback" not in bad.stderr


def test_torn_failure_line_and_a_second_run_on_one_output(tmp_path):
    """A kill while a failure is written leaves half a line: the next run retries that structure instead of
    failing on the file. A second label run on an output that one is writing is refused."""
    from capml.io.extxyz import failures_path
    from capml.io.shards import shard_lock

    out = tmp_path / "d.extxyz"
    labeller = ASECalculatorLabeller(EMT, fidelity="emt")
    run_labels(structures(3, bad=(1,)), out, labeller)
    whole = failures_path(out).read_text()
    failures_path(out).write_text(whole + whole[: len(whole) // 2].replace("s01", "s02"))
    assert set(read_failures(out)) == {"s01"}
    with shard_lock(out):  # as another run holds it
        with pytest.raises(InputError, match="another label run is writing"):
            run_labels(structures(3, bad=(1,)), out, labeller)
    again = run_labels(structures(3, bad=(1,)), out, labeller)
    assert (again.labelled, again.failed, again.skipped) == (0, 0, 3)
    assert failures_path(out).read_text() == whole  # the torn tail was cut, the record file is whole lines again


def test_resume_refuses_moved_structures(tmp_path):
    out = tmp_path / "d.extxyz"
    labeller = ASECalculatorLabeller(EMT, fidelity="emt")
    run_labels(structures(2), out, labeller)
    moved = structures(2)
    moved[1].positions[3, 0] += 0.05
    with pytest.raises(InputError, match=r"'s01'.*moved by up to 0.05 Å"):
        run_labels(moved, out, labeller)


def test_subset_stride_zero_gives_the_fidelity_to_none_and_a_negative_one_is_refused(tmp_path):
    from capml.structures.prototypes import antiperovskite
    from tests.conftest import GFN2WithIPEA1Gap

    atoms = antiperovskite("Ag", "S", "Br", 4.793).repeat((2, 2, 1))
    atoms.rattle(0.03, seed=0)
    atoms.info["structure_id"] = "s0"
    out = tmp_path / "d.extxyz"
    summary = run_labels([atoms], out, GFN2WithIPEA1Gap(), subsets={"ipea1": 0})
    assert summary.labelled == 1
    assert "gap_ipea1" not in read_dataset(out)[0].info
    assert "ipea1" not in read_settings(out).fidelities
    with pytest.raises(InputError, match=r"labels.subsets.ipea1=-1: expected a stride"):
        run_labels([atoms], tmp_path / "e.extxyz", GFN2WithIPEA1Gap(), subsets={"ipea1": -1})
