"""Labels where the simulation goes: relaxed configurations and the MD snapshots the gap models disagree on.

One round (``simulate.py stage=active_learning simulate.active_learning.round=R``):

1. relax every inequivalent decoration of the grid's compositions with the MLIP (the configurations stage);
2. batched Langevin MD of the lowest configurations over the grid of compositions x temperatures;
3. score every snapshot after equilibration by the spread (standard deviation) of an ensemble of gap models;
4. pick the most uncertain snapshots of each trajectory, at least ``min_spacing_fs`` apart in time;
5. write the relaxed configurations and the picked snapshots as label inputs (``relaxed.extxyz``,
   ``picked.extxyz``) and label them with the label stage (resumable, shardable, both fidelities);
6. record the round (``round.json``: models, grid, scores and picks);
7. with ``retrain.enabled``, train a new gap ensemble (``train.py`` with ``retrain.overrides``) with the labelled
   frames of this and every earlier round in its training split (``data.extra_train``), into
   ``round<R>/ensemble``: the next round scores with it unless ``ensemble`` names another.

The MLIP is refitted the same way by hand (`train.py experiment=mlip_finetune mlip.extra_train=[...]`): a
round's dataset is a dataset file like any other. Every input is written once per round and reused by a rerun,
and labelling is resumable, so a killed round resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from ase import Atoms

from capml.errors import InputError
from capml.io.paths import portable_path, resolve_path


def relaxed_label_inputs(relaxed: Sequence[Atoms], prefix: str = "", source: str = "") -> list[Atoms]:
    """Label inputs for relaxed configurations: the structure alone (no MLIP results), with ``structure_id``
    "<prefix>relaxed_<config_id>", its ``config_id`` (split group), ``x``, temperature 0 and sampling
    "relaxed"."""
    out = []
    for atoms in relaxed:
        cid = str(atoms.info["config_id"])
        fresh = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        fresh.info.update(structure_id=f"{prefix}relaxed_{cid}", config_id=cid, x=float(atoms.info["x"]),
                          temperature=0.0, sampling="relaxed", multiplicity=int(atoms.info.get("multiplicity", 1)),
                          source=source or "relaxed by the MLIP")
        out.append(fresh)
    return out


def path_label_inputs(start: Atoms, relaxed: Atoms, fractions: Sequence[float], prefix: str = "",
                      source: str = "") -> list[Atoms]:
    """Structures on the straight line from ``start`` (the unrelaxed decoration, same atom order) to the MLIP's
    ``relaxed`` one: cell and fractional coordinates (minimum image) interpolated at each fraction in (0, 1).
    They teach the landscape the relaxation crossed, where a wrong MLIP minimum came from. ``structure_id``
    "<prefix>path<f>_<config_id>", split group the relaxed configuration's ``config_id``, sampling "path"."""
    if list(start.numbers) != list(relaxed.numbers):
        raise InputError(f"{relaxed.info.get('config_id')}: start and relaxed structures differ in species or order")
    cid = str(relaxed.info["config_id"])
    s0, s1 = start.get_scaled_positions(wrap=False), relaxed.get_scaled_positions(wrap=False)
    ds = s1 - s0
    ds -= np.round(ds)
    out = []
    for f in fractions:
        if not 0.0 < float(f) < 1.0:
            raise InputError(f"path fraction {f}: expected a number between 0 and 1 (exclusive)")
        cell = (1 - f) * np.asarray(start.cell) + f * np.asarray(relaxed.cell)
        atoms = Atoms(start.numbers, scaled_positions=(s0 + f * ds) % 1.0, cell=cell, pbc=True)
        atoms.info.update(structure_id=f"{prefix}path{f:.2f}_{cid}", config_id=cid, x=float(relaxed.info["x"]),
                          temperature=0.0, sampling="path", path_fraction=float(f),
                          source=source or "between the unrelaxed decoration and its MLIP minimum")
        out.append(atoms)
    return out


def strained_label_inputs(atoms: Atoms, strains_percent: Sequence[float], rattle_A: float, seed: int,
                          prefix: str = "", source: str = "") -> list[Atoms]:
    """``atoms`` (a decoration at its Vegard cell) scaled isotropically by each linear strain (%), then rattled
    uniformly by up to ``rattle_A`` (seeded): the equation of state at a mixed composition, which the phonon
    samples at one volume never show. ``structure_id`` "<prefix>strain<s>_<config_id>", sampling "strained"."""
    from capml.structures.thermal import uniform_rattle

    cid = str(atoms.info["config_id"])
    out = []
    for i, strain in enumerate(strains_percent):
        scaled = atoms.copy()
        scaled.set_cell(np.asarray(atoms.cell) * (1 + float(strain) / 100), scale_atoms=True)
        if rattle_A > 0:
            scaled = uniform_rattle(scaled, rattle_A, seed + i)
        fresh = Atoms(scaled.numbers, scaled.positions, cell=scaled.cell, pbc=True)
        fresh.info.update(structure_id=f"{prefix}strain{float(strain):+g}_{cid}", config_id=f"{prefix}{cid}",
                          x=float(atoms.info["x"]), temperature=0.0, sampling="strained",
                          strain_percent=float(strain), source=source or "isotropic strain of a Vegard cell")
        out.append(fresh)
    return out


def pick_uncertain(scores: np.ndarray, times_fs: np.ndarray, n_pick: int, min_spacing_fs: float) -> list[int]:
    """Indices of the ``n_pick`` highest ``scores`` of one trajectory, greedily, no two closer than
    ``min_spacing_fs`` in time (fewer when the trajectory is too short). Ties keep the earlier frame."""
    scores = np.asarray(scores, float)
    times_fs = np.asarray(times_fs, float)
    order = np.lexsort((times_fs, -scores))
    picked: list[int] = []
    for i in order:
        if len(picked) == n_pick:
            break
        if all(abs(times_fs[i] - times_fs[j]) >= min_spacing_fs for j in picked):
            picked.append(int(i))
    return sorted(picked, key=lambda i: times_fs[i])


def snapshot_label_inputs(run_name: str, frames: Sequence[Atoms], indices: Sequence[int], x: float,
                          temperature_K: float, scores: np.ndarray, prefix: str = "",
                          source: str = "") -> list[Atoms]:
    """Label inputs for picked MD snapshots: ``structure_id`` "<prefix><run>_t<time>fs", ``config_id``
    "<prefix><run>" (one MD run is one split group), sampling "md" and the ensemble spread that picked it."""
    out = []
    for i in indices:
        frame = frames[i]
        time_fs = float(frame.info.get("time_fs", i))
        atoms = Atoms(frame.numbers, frame.positions, cell=frame.cell, pbc=frame.pbc)
        atoms.info.update(structure_id=f"{prefix}{run_name}_t{time_fs:g}fs", config_id=f"{prefix}{run_name}",
                          x=float(x), temperature=float(temperature_K), sampling="md", time_fs=time_fs,
                          ensemble_std_eV=float(scores[i]), source=source or "MLIP MD snapshot")
        out.append(atoms)
    return out


def picks_table(picked: Sequence[Atoms]) -> pd.DataFrame:
    return pd.DataFrame([{k: a.info[k] for k in ("structure_id", "config_id", "x", "temperature", "time_fs",
                                                  "ensemble_std_eV")} for a in picked])


def read_if_exists(path: Path) -> list[Atoms] | None:
    from capml.io.extxyz import read_structures

    return read_structures(path) if path.is_file() else None


def run_round(cfg, prepare_only: bool = False) -> dict:
    """One active-learning round on the composed simulate config (``simulate.active_learning``); see the module
    docstring. Returns the round record (also written as ``round.json``)."""
    import copy
    import logging

    from omegaconf import open_dict

    from capml.io.shards import run_lock

    log = logging.getLogger("capml.simulate")
    a = cfg.simulate.active_learning
    folder = Path(cfg.workdir) / f"round{a.round}"
    sub = copy.deepcopy(cfg)
    with open_dict(sub):
        sub.workdir = str(folder)
        sub.seed = int(cfg.seed) + int(a.round)  # each round its own MD noise
        sub.simulate.x = list(a.x)
        sub.simulate.temperature = list(a.temperature)
        sub.simulate.md.n_steps = int(a.md_steps)
        sub.simulate.md.configurations_per_composition = a.configurations_per_composition
    prefix = f"{a.id_prefix}r{a.round}_"
    inputs_path = folder / "label_inputs.extxyz"
    record_path = folder / "round.json"
    folder.mkdir(parents=True, exist_ok=True)
    with run_lock(folder / "round"):  # two label shards started at once: one chooses, the other waits
        record = _choose(cfg, sub, folder, prefix, inputs_path, record_path, log)
    if prepare_only or not a.label:
        return record
    return _label_round(cfg, folder, inputs_path, record_path, record, log)


def _choose(cfg, sub, folder: Path, prefix: str, inputs_path: Path, record_path: Path, log) -> dict:
    """Steps 1-4: relaxations, MD, ensemble scores and picks, written once per round (reused by a rerun)."""
    import json

    from capml.io.contract import write_dataset
    from capml.models.predict import GapPredictor, ensemble_std
    from capml.simulate import pipeline as simulate_pipeline
    from capml.simulate.run import SimulationRun

    a = cfg.simulate.active_learning
    if inputs_path.is_file() and record_path.is_file():
        log.info("active learning round %s: label inputs already chosen (%s)", a.round, inputs_path)
        return json.loads(record_path.read_text())
    run, settings = SimulationRun.from_config(sub), simulate_pipeline.PipelineSettings.from_config(sub)
    simulate_pipeline.configurations(run, settings)
    table, relaxed = run.table(), run.relaxed()
    inputs = relaxed_label_inputs([relaxed[c] for c in table["config_id"]], prefix,
                                  f"relaxed by {cfg.simulate.mlip_model}") if a.include_relaxed else []
    simulate_pipeline.md(run, settings)
    source = str(a.get("ensemble") or _previous_ensemble(folder) or cfg.simulate.gnn_checkpoint)
    if not Path(source).exists():
        raise InputError(f"simulate.active_learning.ensemble={source}: not found (expected a folder of GNN "
                         "checkpoints, an ensemble)")
    ensemble = GapPredictor.from_checkpoint(source)
    if ensemble.members < 2:
        raise InputError(f"simulate.active_learning.ensemble={source}: {ensemble.members} model; the "
                         "disagreement score needs an ensemble (a folder of at least 2 checkpoints)")
    picked, scored = [], []
    x_of = dict(zip(table["config_id"], table["x"]))
    for r in run.md_runs():
        cid, temperature, name = r.config_id, r.temperature_K, r.name
        frames = run.trajectory(r, a.discard_fs)
        if not frames:
            raise InputError(f"{name}: no MD frames after simulate.active_learning.discard_fs={a.discard_fs}")
        score = ensemble_std(ensemble.predict_members(frames, where=name))
        times = np.array([f.info["time_fs"] for f in frames])
        chosen = pick_uncertain(score, times, int(a.picks_per_run), float(a.min_spacing_fs))
        picked += snapshot_label_inputs(name, frames, chosen, x_of[cid], temperature, score, prefix,
                                        f"MD of {cfg.simulate.mlip_model}, round {a.round}")
        scored.append({"run": name, "x": float(x_of[cid]), "temperature_K": float(temperature),
                       "frames": len(frames), "std_median_eV": float(np.median(score)),
                       "std_max_eV": float(score.max()), "picked": len(chosen),
                       "picked_std_mean_eV": float(score[chosen].mean()) if chosen else float("nan")})
    write_dataset(folder / "picked.extxyz", picked)
    write_dataset(inputs_path, inputs + picked)
    record = {"round": int(a.round), "mlip_model": portable_path(cfg.simulate.mlip_model),
              "ensemble": portable_path(source), "ensemble_members": ensemble.members,
              "ensemble_target": ensemble.target, "grid": {"x": list(a.x), "temperature_K": list(a.temperature)},
              "md": {"steps": int(a.md_steps), "seed": int(sub.seed)},
              "relaxed_inputs": len(inputs), "picked_snapshots": len(picked), "runs": scored,
              "label_inputs": portable_path(inputs_path), "dataset": portable_path(a.out)}
    pd.DataFrame(scored).to_csv(folder / "scores.csv", index=False)
    _write_record(record_path, record)
    log.info("active learning round %s: %d relaxed configurations and %d MD snapshots to label -> %s", a.round,
             len(inputs), len(picked), inputs_path)
    return record


def _write_record(path: Path, record: dict) -> None:
    from capml.io.jsonio import write_json

    write_json(path, record)


def _label_round(cfg, folder: Path, inputs_path: Path, record_path: Path, record: dict, log) -> dict:
    """Step 5 (labels, every optional fidelity on every structure) and 7 (retrain)."""
    from capml.io.contract import read_dataset
    from capml.labels.run import make_labeller, parse_shard, run_labels

    a = cfg.simulate.active_learning
    labeller = make_labeller(cfg)
    structures = read_dataset(inputs_path, require=())
    summary = run_labels(structures, a.out, labeller, subsets={name: 1 for name in labeller.optional},
                         limit=cfg.label.limit, retry_failed=cfg.label.retry_failed, where=str(inputs_path),
                         shard=parse_shard(cfg.label.get("shard")))
    record["labelled"] = {"new": summary.labelled, "skipped": summary.skipped, "failed": summary.failed}
    log.info("active learning round %s: labelled %d, skipped %d, failed %d -> %s", a.round, summary.labelled,
             summary.skipped, summary.failed, a.out)
    if a.retrain.enabled and not cfg.label.get("shard"):
        record["retrained"] = retrain(folder, a)
        _write_record(record_path, record)
    return record


def _previous_ensemble(folder: Path) -> Path | None:
    """The ensemble the previous round retrained, if it did."""
    round_number = int(folder.name.removeprefix("round"))
    previous = folder.parent / f"round{round_number - 1}" / "ensemble"
    return previous if (previous / "ensemble.json").is_file() else None


def retrain(folder: Path, plan) -> dict:
    """A new gap ensemble with the labelled frames of this and the earlier rounds as extra training data (train.py
    in a subprocess, so its Hydra run is its own); returns what it ran and where the ensemble is."""
    import json
    import subprocess
    import sys

    from capml.cli import ROOT

    datasets = [str(Path(p).resolve()) for p in plan.retrain.get("extra_train") or []]
    for k in range(int(plan.round) + 1):
        record = folder.parent / f"round{k}" / "round.json"
        path = resolve_path(json.loads(record.read_text())["dataset"]) if record.is_file() else None
        if path is not None and path.is_file():
            datasets.append(str(path.resolve()))
    export = folder / "ensemble"
    command = [sys.executable, str(ROOT / "train.py"), *plan.retrain.overrides,
               f"ensemble.members={int(plan.retrain.members)}", f"ensemble.export_dir={export}",
               f"data.extra_train=[{','.join(datasets)}]", f"hydra.run.dir={folder / 'train'}"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise InputError(f"active learning retrain failed ({' '.join(command[1:])}): "
                         f"{(result.stderr.strip().splitlines() or ['no message'])[-1]}")
    return {"command": command[1:], "extra_train": [portable_path(p) for p in datasets],
            "ensemble": portable_path(export)}
