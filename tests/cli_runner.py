"""Run `python simulate.py|train.py ARGS` as a fresh process, fast: each run is a new process forked from a server
that has already imported torch, MACE, Lightning and capml (multiprocessing's forkserver), so the tables of CLI
cases (tests/test_bad_input.py, tests/test_run_records.py) do not pay ~5 s of imports per case. The child gets its
own working folder, environment, argv, stdout and stderr files and exit status, as a subprocess would; what it
does not repeat is the import of those modules (their import-time output is checked by tests that start a real
interpreter, e.g. tests/test_cli_errors.py and tests/simulate/test_demo_warnings.py)."""

from __future__ import annotations

import multiprocessing
import os
import runpy
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRELOAD = ["tests.cli_preload"]
_context = None


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


def _server():
    global _context
    if _context is None:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _child(script: str, args: list[str], cwd: str, env: dict, out_path: str, err_path: str) -> None:
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, out_path), (2, err_path)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(handle, fd)
        os.close(handle)
    sys.stdout = open(1, "w", closefd=False, buffering=1)
    sys.stderr = open(2, "w", closefd=False, buffering=1)
    sys.argv = [script, *args]
    sys.path[0:0] = [str(Path(script).resolve().parent)]
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:  # sys.exit("message"): printed to stderr, status 1, as the interpreter does
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - an uncaught exception: its traceback on stderr, status 1
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_cli(script: str, *args: str, cwd: str | Path = ROOT, env: dict | None = None,
            timeout: float = 600) -> Completed:
    """``python <script> <args>`` in ``cwd`` (script relative to the checkout), as a forked fresh process."""
    context = _server()
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", **(env or {})}
    with tempfile.TemporaryDirectory() as folder:
        out, err = os.path.join(folder, "stdout"), os.path.join(folder, "stderr")
        process = context.Process(target=_child, args=(str(ROOT / script), list(args), str(cwd), environment,
                                                       out, err))
        process.start()
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join()
            raise TimeoutError(f"{script} {' '.join(args)}: still running after {timeout} s")
        return Completed(process.exitcode, Path(out).read_text(errors="replace"),
                         Path(err).read_text(errors="replace"))
