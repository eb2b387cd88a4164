"""A refused run never touches another run's records (issue 27, section 3), for every stage of simulate.py.

Each case is a workdir holding the records of a finished run of the stage (``.hydra/<stage>/``,
``<stage>.config.yaml``), the pending records of a run of the stage still under way (``.pending-<pid>@<host>``, named as capml names them) and a
``simulate.log`` that the running run keeps appending to (a thread here, writing under the file lock as capml's runs
do) while the same stage is started in the folder with bad input. The refused run must exit with one line, leave every
record as it was, and leave the log with exactly the lines the other run wrote: none of its own, none lost. The
refusals come at run time, after Hydra has started the run (so its own records and log lines exist until clean-up).
Real runs of a stage and a real concurrent label run are in ``tests/simulate/test_run_records.py``."""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.cli_runner import run_cli

from capml.io.records import PENDING

ROOT = Path(__file__).resolve().parents[1]
BAD_LABELLER = ["labels=ase", "labels.labeller.calculator._target_=capml.nonexistent.Calculator"]
BAD_TEMPERATURE = ["simulate.temperature=-5"]

# stage -> command-line overrides it refuses at run time, and a fragment of the refusal
REFUSALS = {
    "validate": (["validate.path={tmp}/none.extxyz"], "not found"),
    "label": (["labels=ase", "label.structures={tmp}/none.extxyz"], "not found"),
    "sample": (["structures.compositions=[0.3]"], "k/8"),
    "data_demo": (["system.end_member_phonons.Br={tmp}/none.yaml"], "not found"),
    "import_vasp": (["import.root={tmp}/nothing"], "not a folder"),
    "lattice": (BAD_LABELLER, "labels.labeller"),
    "parents": (BAD_LABELLER, "labels.labeller"),
    "md_check": (BAD_TEMPERATURE, "above 0"),
    "active_learning": (["simulate.active_learning.temperature=[-5]"], "above 0"),
    **{stage: (BAD_TEMPERATURE, "above 0") for stage in ("configurations", "phonons", "md", "nmd", "gaps", "modes",
                                                         "expansion", "pipeline", "demo")},
}


def _append(log: Path, line: str) -> None:
    with open(log, "a") as handle:  # as a running capml run writes its log: one locked write per line
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        handle.write(line)
        handle.flush()
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _files(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def _case(stage: str, base: Path) -> dict:
    tmp = base / stage
    work = tmp / "work"
    running = f"{PENDING}{os.getpid()}@{socket.gethostname()}"  # a live process of this host: a run under way
    records = {f".hydra/{stage}/config.yaml": "stage: finished\n", f".hydra/{stage}/overrides.yaml": "- x=[0,1]\n",
               f".hydra/{stage}/hydra.yaml": "hydra: {}\n", f"{stage}.config.yaml": "seed: 0  # the finished run\n",
               f".hydra/{stage}{running}/config.yaml": "stage: running\n",
               f"{stage}.config.yaml{running}": "seed: 0  # the running run\n",
               "results/table.csv": "x,gap\n0,1.2\n",
               "simulate.log": "[finished] line 1\n[finished] line 2\n"}
    for name, text in records.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    before = _files(work)
    written, stop = [], threading.Event()

    def other_run():
        k = 0
        while not stop.is_set():
            line = f"[running] line {k}\n"
            _append(work / "simulate.log", line)
            written.append(line)
            k += 1
            time.sleep(0.05)

    overrides, fragment = REFUSALS[stage]
    writer = threading.Thread(target=other_run)
    writer.start()
    try:
        done = run_cli("simulate.py", f"stage={stage}", f"workdir={work}",
                       *[o.replace("{tmp}", str(tmp)) for o in overrides])
    finally:
        stop.set()
        writer.join()
    return {"code": done.returncode, "lines": [ln for ln in done.stderr.splitlines() if ln.strip()],
            "fragment": fragment, "before": before, "after": _files(work), "written": written}


@pytest.fixture(scope="module")
def refused(request, tmp_path_factory):
    selected = {item.callspec.params["stage"] for item in request.session.items
                if getattr(item, "module", None) is request.module
                and "stage" in getattr(getattr(item, "callspec", None), "params", {})}
    base = tmp_path_factory.mktemp("records")
    stages = [s for s in REFUSALS if s in selected]
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(stages, pool.map(lambda stage: _case(stage, base), stages)))


def test_every_stage_is_covered():
    from capml.simulate.stages import STAGES

    assert set(REFUSALS) == set(STAGES)


@pytest.mark.parametrize("stage", list(REFUSALS))
def test_a_refused_run_leaves_the_records_and_log_of_other_runs_alone(refused, stage):
    result = refused[stage]
    assert result["code"] == 2 and len(result["lines"]) == 1, result["lines"][-5:]
    assert result["lines"][0].startswith("error: ") and result["fragment"] in result["lines"][0], result["lines"]
    before, after = dict(result["before"]), dict(result["after"])
    log_before, log_after = before.pop("simulate.log"), after.pop("simulate.log")
    assert after == before  # the finished run's records, the running run's pending ones, results: as they were
    assert len(result["written"]) > 5  # the other run wrote while this one started and was refused
    assert log_after.decode() == log_before.decode() + "".join(result["written"])  # its lines only, and all of them
