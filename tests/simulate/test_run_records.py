"""Refused runs beside real runs of simulate.py (issue 27, section 3): a refused rerun into a folder of finished
results leaves that run's records (``.hydra/<stage>/``, ``<stage>.config.yaml``, ``simulate.log``) and results as they
were, and a second label run refused while the first is under way leaves the first one's records and log lines alone.
Every stage on prepared folders: ``tests/test_run_records.py``."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from ase.build import bulk
from ase.calculators.emt import EMT

from capml.io.records import PENDING

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


class GatedEMT(EMT):
    """EMT that logs a numbered line every 0.1 s until the file $CAPML_TEST_GATE exists, then calculates: a label
    run that stays under way, writing its log, for as long as the test wants."""

    def calculate(self, *args, **kwargs):
        gate, k = Path(os.environ["CAPML_TEST_GATE"]), 0
        while not gate.exists():
            logging.getLogger("capml.test").info("waiting %d", k)
            k += 1
            time.sleep(0.1)
        super().calculate(*args, **kwargs)


def simulate(*args, env=None, wait=True):
    command = [sys.executable, "simulate.py", *map(str, args)]
    if not wait:
        return subprocess.Popen(command, cwd=ROOT, env=env or ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    done = subprocess.run(command, cwd=ROOT, env=env or ENV, capture_output=True, text=True, timeout=900)
    return done.returncode, [ln for ln in done.stderr.splitlines() if ln.strip()]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def structures(path: Path, moved: float = 0.0) -> Path:
    from capml.io.contract import write_dataset

    frames = []
    for i in range(2):
        atoms = bulk("Cu", cubic=True)
        atoms.positions[0] += moved
        atoms.info["structure_id"] = f"s{i}"
        frames.append(atoms)
    write_dataset(path, frames)
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory, mace_model_path):
    """A folder where configurations (x = 0, 1) and then MD (seed 0) ran to the end, and one where a label run did."""
    work = tmp_path_factory.mktemp("finished") / "run"
    common = [f"workdir={work}", f"simulate.mlip_model={mace_model_path}", "simulate.temperature=300"]
    code, lines = simulate("stage=configurations", "simulate.x=[0,1]", "simulate.configurations.max_steps=2", *common)
    assert code == 0, lines[-5:]
    code, lines = simulate("stage=md", "simulate.x=[0,1]", "simulate.md.n_steps=4", "simulate.md.save_every_steps=2",
                           "simulate.md.dtype=float64", *common)
    assert code == 0, lines[-5:]
    labelled = tmp_path_factory.mktemp("labelled") / "run"
    code, lines = simulate("stage=label", "labels=ase", f"workdir={labelled}",
                           f"label.structures={structures(labelled.parent / 'structures.extxyz')}")
    assert code == 0, lines[-5:]
    return {"pipeline": work, "common": common, "label": labelled}


@pytest.mark.parametrize("stage, args, fragment", [
    ("configurations", ["simulate.x=[1.5]", "simulate.configurations.max_steps=2"], "simulate.x"),
    ("md", ["simulate.x=[0,1]", "simulate.md.n_steps=8", "simulate.md.save_every_steps=2",
            "simulate.md.dtype=float64", "seed=7"], "md.seed=7"),
])
def test_a_refused_rerun_keeps_the_finished_runs_records(finished, stage, args, fragment):
    work = finished["pipeline"]
    before = files(work)
    assert yaml.safe_load(before[f"{stage}.config.yaml"])["seed"] == 0
    assert f".hydra/{stage}/config.yaml" in before and "simulate.log" in before
    code, lines = simulate(f"stage={stage}", *args, *finished["common"])
    assert code == 2 and len(lines) == 1 and fragment in lines[0], lines[-5:]
    assert files(work) == before  # records, log and results of the finished runs, byte for byte


def test_a_refused_label_rerun_keeps_the_finished_runs_records(finished):
    work = finished["label"]
    before = files(work)
    moved = structures(work.parent / "moved.extxyz", moved=0.3)  # same ids, other structures: refused
    code, lines = simulate("stage=label", "labels=ase", f"workdir={work}", f"label.structures={moved}")
    assert code == 2 and len(lines) == 1 and "moved by" in lines[0], lines[-5:]
    assert files(work) == before


def test_a_second_label_run_refused_while_the_first_runs_leaves_the_first_alone(tmp_path):
    """`simulate.py stage=label ... &` and the same command while it runs: the second is refused, and the first
    keeps its pending Hydra records and every line of its log, publishes its records when it ends."""
    work, gate = tmp_path / "work", tmp_path / "gate"
    args = ["stage=label", "labels=ase", "labels.labeller.calculator._target_=tests.simulate.test_run_records.GatedEMT",
            f"workdir={work}", f"label.structures={structures(tmp_path / 'structures.extxyz')}"]
    env = {**ENV, "CAPML_TEST_GATE": str(gate)}
    first = simulate(*args, env=env, wait=False)
    try:
        deadline = time.time() + 300
        while "waiting 0" not in ((work / "simulate.log").read_text() if (work / "simulate.log").exists() else ""):
            assert first.poll() is None and time.time() < deadline, first.communicate()[1][-2000:]
            time.sleep(0.2)
        pending = [p.name for p in (work / ".hydra").iterdir()]
        assert len(pending) == 1 and pending[0].startswith("label.pending-")
        code, lines = simulate(*args, env=env)
        assert code == 2 and len(lines) == 1 and "another label run is writing" in lines[0], lines[-5:]
        assert [p.name for p in (work / ".hydra").iterdir()] == pending  # the first run's records, untouched
        assert (work / ".hydra" / pending[0] / "config.yaml").is_file()
        gate.touch()
        _, err = first.communicate(timeout=300)
    finally:
        gate.touch()
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err[-2000:]
    log = (work / "simulate.log").read_text()
    waiting = [int(line.rsplit(" ", 1)[1]) for line in log.splitlines() if "[capml.test]" in line]
    assert waiting == list(range(len(waiting))) and len(waiting) > 20  # not one line of the first run lost
    assert sorted(p.name for p in (work / ".hydra").iterdir()) == ["label"]  # published when it ended
    assert yaml.safe_load((work / "label.config.yaml").read_text())["stage"] == "label"
    assert not list(work.glob(f"*{PENDING}*"))
