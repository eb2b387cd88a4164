"""MACE training with mace-torch's own trainer (``mace_run_train``), driven by the ``mlip`` config group.

One function serves both uses:
- fine-tuning from a foundation model, given by name (``small``, ``medium``, ``medium-mpa-0``, ...: mace
  downloads it wherever the network allows) or by a local file (the bundled ``models/mace_base.model``);
- training the bundled base model from scratch (``mlip.foundation_model: null``).

The run directory gets the split files, mace's own logs/checkpoints/results, the final model, and
``metrics.json`` from :mod:`capml.mlip.evaluate`. mace runs in a subprocess with ``--restart_latest``, so a killed
run continues from its last checkpoint (``mlip.resume=false``: starts over, for the numbers of an uninterrupted
run), and mace's global dtype/logging setup stays out of the caller.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Mapping

from omegaconf import DictConfig, OmegaConf

from capml.io.records import save_resolved_config
from capml.errors import InputError
from capml.io.contract import ENERGY_KEY, FORCES_KEY, STRESS_KEY, refuse_mixed_settings
from capml.mlip.data import GROUP_KEY, SplitFiles, plan_splits
from capml.io.jsonio import write_json

log = logging.getLogger("capml.mlip")

# mace losses that train on stress; "weighted" and "ef" silently ignore it.
STRESS_LOSSES = ("stress", "huber", "universal")
MACE_NAME = "mace"


def foundation_names() -> set[str]:
    from mace.calculators.foundations_models import mace_mp_urls

    return set(mace_mp_urls)


def resolve_foundation(foundation: str | None) -> str | None:
    """A local model file (checked to exist) or a mace-mp name passed on to mace unchanged."""
    if foundation is None:
        return None
    if str(foundation) in foundation_names():
        return str(foundation)
    path = Path(foundation).expanduser()
    if not path.is_file():
        raise InputError(
            f"mlip.foundation_model='{foundation}': neither a model file nor a mace-mp foundation name "
            f"(expected a path or one of {sorted(foundation_names())})"
        )
    return str(path.resolve())


def foundation_model_file(foundation: str) -> Path:
    """The file behind a foundation given by name (mace's download cache; downloads if the network allows)."""
    if foundation in foundation_names():
        from mace.calculators.foundations_models import download_mace_mp_checkpoint

        return Path(download_mace_mp_checkpoint(foundation))
    return Path(foundation)


def foundation_in_dtype(foundation: str | None, dtype: str, out_dir: Path) -> str | None:
    """A local foundation model in the training dtype: mace loads local files as saved, and a float32 model in a
    float64 run fails on mixed dtypes (E0 estimation, weight transfer). Named models mace converts itself."""
    if foundation is None or foundation in foundation_names():
        return foundation
    import torch

    from capml.mlip.calculator import load_mace_module

    if not Path(foundation).is_file():
        raise InputError(f"mlip.foundation_model={foundation}: file not found (a .model file or a MACE-MP name)")
    model = load_mace_module(Path(foundation))
    if next(model.parameters()).dtype == getattr(torch, dtype):
        return foundation
    converted = out_dir / f"foundation_{dtype}.model"
    torch.save(model.to(getattr(torch, dtype)), converted)
    log.info("foundation %s converted to %s: %s", foundation, dtype, converted)
    return str(converted)


def mace_arguments(m: Mapping, files: SplitFiles, work_dir: Path, foundation: str | None) -> list[str]:
    """Command-line flags of mace_run_train for the ``mlip`` config ``m``."""
    stress = m.stress_weight > 0
    if foundation is None and str(m.E0s).lower() in ("estimated", "foundation"):
        raise InputError(f"mlip.E0s='{m.E0s}' needs a foundation model; from scratch use E0s: average")
    if stress and m.loss not in STRESS_LOSSES:
        raise InputError(
            f"mlip.loss='{m.loss}' with mlip.stress_weight={m.stress_weight}: this mace loss drops stress; "
            f"use one of {list(STRESS_LOSSES)} or set stress_weight: 0"
        )
    flags: dict[str, object] = {
        "name": MACE_NAME,
        "work_dir": work_dir,
        "seed": m.seed,
        "device": m.device,
        "default_dtype": m.default_dtype,
        "train_file": files.train,
        "valid_file": files.val,  # mace-torch's own name
        "test_file": files.test,
        "energy_key": ENERGY_KEY,
        "forces_key": FORCES_KEY,
        "stress_key": STRESS_KEY,
        "E0s": m.E0s,
        "loss": m.loss,
        "energy_weight": m.energy_weight,
        "forces_weight": m.forces_weight,
        "stress_weight": m.stress_weight,
        "compute_stress": stress,
        "error_table": "PerAtomMAEstressvirials" if stress else "PerAtomMAE",
        "max_num_epochs": m.epochs,
        # mace drops the last incomplete batch: a batch larger than the training set would leave no batches
        "batch_size": min(m.batch_size, files.counts["train"]),
        "valid_batch_size": m.batch_size,
        "lr": m.lr,
        "ema": m.ema,
        "num_workers": 0,
    }
    if foundation is None:
        flags.update(r_max=m.r_max_A, **OmegaConf.to_container(m.architecture))
    else:
        # mace takes r_max and the architecture from the foundation model; replaying its pretraining data
        # (multihead fine-tuning) needs that data, given as pt_train_file
        flags.update(foundation_model=foundation, multiheads_finetuning=m.multiheads_finetuning)
        if m.pt_train_file is not None:
            flags["pt_train_file"] = m.pt_train_file
    extra = OmegaConf.to_container(m.extra_args) if m.extra_args else {}
    clash = sorted(set(extra) & set(flags))
    if clash:
        raise InputError(f"mlip.extra_args sets {clash}, which have their own mlip keys; set those instead")
    flags.update(extra)
    # mace resumes from the newest checkpoint in work_dir/checkpoints when one exists
    return command_line(flags | {"restart_latest": True})


def command_line(flags: Mapping[str, object]) -> list[str]:
    """argv for mace's own parser: on/off switches (``--ema``) bare, everything else ``--key=value``; an
    unknown flag is an InputError naming it."""
    from mace.tools import build_default_arg_parser

    actions = build_default_arg_parser()._option_string_actions
    argv = []
    for key, value in flags.items():
        action = actions.get(f"--{key}")
        if action is None:
            raise InputError(f"mlip: '{key}' is not a mace_run_train flag (see mace/tools/arg_parser.py)")
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            if bool(value) == isinstance(action, argparse._StoreTrueAction):
                argv.append(f"--{key}")
        elif value is not None:
            argv.append(f"--{key}={value}")
    return argv


def check_device(device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("mlip.device='cuda' but torch sees no CUDA device; use device: cpu")
    if device not in ("cpu", "cuda"):
        raise InputError(f"mlip.device='{device}': expected 'cpu' or 'cuda'")


def inputs_fingerprint(argv: list[str], files: SplitFiles) -> str:
    digest = hashlib.sha256("\n".join(argv).encode())
    for split in ("train", "val"):
        digest.update(files.path(split).read_bytes())
    return digest.hexdigest()


def prepare_work_dir(work_dir: Path, fingerprint: str, resume: bool = True) -> None:
    """Keep mace's checkpoints for a rerun with the same flags and data (it resumes from the last one); drop them
    when flags or data changed, so a grown dataset is never "resumed" past its last epoch without training, and
    when ``resume`` is off (a killed run then starts over and ends with an uninterrupted run's numbers: mace keeps
    neither its random state nor the raw weights under EMA, so a resumed run ends elsewhere)."""
    stamp = work_dir / "inputs.sha256"
    if stamp.exists() and stamp.read_text().strip() != fingerprint:
        log.warning("%s: flags or data changed since the last run; starting afresh", work_dir)
        shutil.rmtree(work_dir / "checkpoints", ignore_errors=True)
    elif not resume and (work_dir / "checkpoints").exists():
        log.warning("%s: mlip.resume=false; the checkpoints of the earlier run are dropped, training starts over",
                    work_dir)
        shutil.rmtree(work_dir / "checkpoints", ignore_errors=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint + "\n")


def _die_with_parent() -> None:
    """In the mace child (Linux): end it when train.py ends, however it ends (kill -9 included), so a killed
    run never leaves a trainer writing into the folder that its rerun uses."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: the child may outlive a killed parent
        pass


def run_mace_train(argv: list[str], work_dir: Path, fingerprint: str, resume: bool = True) -> Path:
    """Run mace_run_train in a subprocess, its output appended to ``mace_stdout.log``; returns the model file."""
    prepare_work_dir(work_dir, fingerprint, resume)
    command = [sys.executable, "-m", "mace.cli.run_train", *argv]
    (work_dir / "mace_command.txt").write_text(" ".join(command) + "\n")
    log.info("mace_run_train %s", " ".join(argv))
    with open(work_dir / "mace_stdout.log", "a") as out, subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=_die_with_parent
    ) as process:
        for line in process.stdout:
            out.write(line)
            if "Epoch" in line or "Error-table" in line:  # progress on the console, everything in the log
                log.info("mace: %s", line.split("INFO: ", 1)[-1].rstrip())
    if process.returncode != 0:
        tail = (work_dir / "mace_stdout.log").read_text().splitlines()[-15:]
        raise RuntimeError(f"mace_run_train failed (exit {process.returncode}); last lines:\n" + "\n".join(tail))
    model = work_dir / f"{MACE_NAME}.model"
    if not model.is_file():
        raise RuntimeError(f"mace_run_train finished without writing {model}")
    return model


def run(cfg: DictConfig) -> dict:
    """Write splits, train or fine-tune with mace, evaluate, and record model path and metrics in the run dir."""
    from capml.mlip.evaluate import evaluate_models

    m = cfg.mlip
    check_device(m.device)
    out_dir = Path(m.out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    lock_file = out_dir / ".lock"
    new_lock = not lock_file.exists()
    lock = open(lock_file, "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise InputError(f"mlip.out_dir={out_dir}: another MACE training (train.py --config-name train_mlip) is "
                         "writing this folder; wait for it or choose another mlip.out_dir") from None
    try:  # every input is checked before anything is written: a refused run leaves the folder as it found it
        foundation = resolve_foundation(m.foundation_model)
        plan = plan_splits(m.dataset, m.val_fraction, m.test_fraction, seed=m.seed,
                           require_stress=m.stress_weight > 0, pinned=m.pin_splits, max_frames=m.max_frames,
                           extra_train=list(m.get("extra_train") or ()), group_key=m.get("group_key", GROUP_KEY))
        heldout = list((m.get("evaluate") or {}).get("heldout") or ())
        if heldout:  # errors against labels of another setting (a Γ-only set beside a k-mesh one) would mean nothing
            refuse_mixed_settings([m.dataset, *heldout], ["REF"], "mlip.evaluate.heldout expects labels of the "
                                  "dataset's fidelity and settings")
        if foundation is not None and foundation not in foundation_names():
            from capml.mlip.calculator import check_elements, load_mace_module

            check_elements(load_mace_module(Path(foundation)), sorted(plan.symbols()),
                           f"mlip.foundation_model={foundation} for {m.dataset}")
        mace_arguments(m, plan.files(out_dir / "splits"), out_dir / "mace", foundation)  # flags mace would refuse
    except InputError:
        if new_lock:  # still under the lock, so no other run can have started in the folder
            lock_file.unlink(missing_ok=True)
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()
        lock.close()
        raise
    files = plan.write(out_dir / "splits")
    foundation_file = foundation_in_dtype(foundation, m.default_dtype, out_dir)
    save_resolved_config(cfg, out_dir, "mlip")
    log.info("splits %s", files.counts)
    argv = mace_arguments(m, files, out_dir / "mace", foundation_file)
    model = run_mace_train(argv, out_dir / "mace", inputs_fingerprint(argv, files), bool(m.get("resume", True)))
    if m.export_model:
        export = Path(m.export_model)
        export.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model, export)
        # the splits travel with the model, so a fine-tune from it can pin them (mlip.pin_splits)
        shutil.copyfile(out_dir / "splits" / "splits.json", export.with_suffix(".splits.json"))
        log.info("exported %s", export)
    models = {"trained": model}
    if foundation is not None:
        models = {"foundation": foundation_model_file(foundation)} | models
    metrics = evaluate_models(models, files, m.evaluate, out_dir)
    summary = {
        "model": str(model.resolve()),
        "exported_model": str(Path(m.export_model).resolve()) if m.export_model else None,
        "foundation_model": foundation,
        "counts": files.counts,
        "metrics": metrics,
    }
    write_json((out_dir / "summary.json"), summary, indent=2)
    print(f"capml mlip: model {model}, metrics in {out_dir.resolve() / 'summary.json'}")
    return summary
