"""Batched Langevin molecular dynamics through torch-sim: many systems, one model call per step.

Every system (a composition x configuration x temperature) lives in one torch-sim state, so the
model sees all atoms at once; on CPU this amortises the per-call overhead of a small MLIP, on a GPU
it fills the device. The BAOAB Langevin integrator (NVT), the Langevin barostat (NPT, so that
thermal expansion enters) and velocity Verlet (NVE: phonon spectra that no thermostat broadens)
are torch-sim's own; start structures that carry velocities (thermalised states) keep them. This
module adds what a long run needs: a trajectory per system written as it runs (positions, velocities, instantaneous temperature and
energy), a checkpoint with the full integrator state and the random-number state, and a resume
that continues bit-for-bit where a killed run stopped.

Units: torch-sim works in eV, Å, amu and the derived time unit sqrt(amu Å²/eV) (~10.18 fs), the
same internal units as ASE, so velocities go to extxyz unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from ase import Atoms, units
from ase.units import kB
from tqdm.auto import tqdm

from capml.errors import InputError
from capml.io.atomic import atomic_path
from capml.keys import canonical_info
from capml.io.contract import write_dataset
from capml.io.extxyz import append_frame, read_complete_frames
from capml.io.torchfile import load_torch_file

log = logging.getLogger(__name__)

CHECKPOINT = "md_state.pt"
# atoms per model call on a CPU (simulate.md.max_atoms_per_batch=auto), by torch threads (1600: measured with two
# threads, assumed for more): with two threads one step
# costs 25 ms per 40-atom system in batches of 42 systems, 29 at 8 and 63 at 168, where the activations no longer fit
# the caches; with one thread 37 ms at 8 systems, 49 at 42 and 101 at 168 (bench/bench_md_batch.py, the bundled MACE,
# float32, 2026-12-03); a GPU takes every system in one batch
CPU_BATCH_ATOMS = {1: 320}
CPU_BATCH_ATOMS_DEFAULT = 1600


def cpu_batch_atoms(threads: int | None = None) -> int:
    """The ``auto`` group size on a CPU for ``threads`` torch threads (default: torch's current number)."""
    return CPU_BATCH_ATOMS.get(int(threads or torch.get_num_threads()), CPU_BATCH_ATOMS_DEFAULT)


@dataclass(frozen=True)
class MDSettings:
    timestep_fs: float = 1.0
    friction_per_ps: float = 5.0
    n_steps: int = 2000
    save_every_steps: int = 10
    ensemble: Literal["nvt", "npt", "nve"] = "nvt"
    pressure_GPa: float = 0.0
    barostat_time_fs: float = 1000.0
    seed: int = 0
    # systems run in groups of at most this many atoms, one group after the other, each its own batch, checkpoint and
    # noise; auto: cpu_batch_atoms() on a CPU (1600 atoms with two threads, 320 with one), all in one batch on a GPU;
    # null: all in one batch
    max_atoms_per_batch: int | str | None = "auto"

    def __post_init__(self):
        if self.ensemble not in ("nvt", "npt", "nve"):
            raise InputError(f"md.ensemble='{self.ensemble}': expected 'nvt', 'npt' or 'nve'")
        limit = self.max_atoms_per_batch
        if not (limit is None or limit == "auto" or (isinstance(limit, int) and not isinstance(limit, bool)
                                                     and limit > 0)):
            raise InputError(f"md.max_atoms_per_batch={limit!r}: expected a positive integer, 'auto' or null")
        for name in ("timestep_fs", "friction_per_ps", "n_steps", "save_every_steps"):
            if getattr(self, name) <= 0:
                raise InputError(f"md.{name}={getattr(self, name)}: expected a positive number")


@dataclass(frozen=True)
class MDSystem:
    """One trajectory: ``name`` names its file, ``atoms`` is the start structure."""

    name: str
    atoms: Atoms
    temperature_K: float


def instantaneous_temperature_K(momenta: np.ndarray, masses: np.ndarray) -> float:
    """2 KE / (3 N k_B): Langevin noise acts on every atom, so all 3N degrees of freedom are thermal."""
    kinetic = 0.5 * np.sum(momenta**2 / masses[:, None])
    return float(2.0 * kinetic / (3 * len(masses) * kB))


def trajectory_path(out_dir: str | Path, name: str) -> Path:
    return Path(out_dir) / f"{name}.extxyz"


def read_trajectory(path: str | Path, discard_fs: float = 0.0) -> list[Atoms]:
    """Frames of one MD trajectory written by :func:`run_md`, dropping those before ``discard_fs``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: MD trajectory not found; run `simulate.py stage=md` first")
    frames = [f for f in read_complete_frames(path, repair=False) if f.info["time_fs"] >= discard_fs]
    for frame in frames:
        canonical_info(frame.info)
    return frames


def last_frame(out_dir: str | Path, name: str) -> Atoms:
    """The last complete frame of one trajectory, parsing only that frame (frame boundaries from the atom counts);
    a torn tail falls back to reading every complete frame."""
    import io

    import ase.io

    path = trajectory_path(out_dir, name)
    if not path.is_file():
        raise InputError(f"{path}: MD trajectory not found; run `simulate.py stage=md` first")
    lines = path.read_text().splitlines(keepends=True)
    offset, last = 0, None
    while offset < len(lines):
        try:
            end = offset + int(lines[offset].split()[0]) + 2
        except (ValueError, IndexError):
            break
        if end > len(lines):
            break
        last, offset = (offset, end), end
    try:
        frame = ase.io.read(io.StringIO("".join(lines[last[0]:last[1]])), format="extxyz")
        canonical_info(frame.info)
        return frame
    except Exception:  # a torn or garbled last frame: the last one that parses
        frames = read_trajectory(path)
        if not frames:
            raise InputError(f"{path}: no complete MD frame") from None
        return frames[-1]


def _integrator(model, settings: MDSettings, temperatures_K: Sequence[float], seed: int | None = None):
    import torch_sim as ts
    from torch_sim.units import MetalUnits

    seed = settings.seed if seed is None else seed  # the Maxwell-Boltzmann start; the noise is torch's global RNG
    kw = dict(device=model.device, dtype=model.dtype)
    dt = torch.tensor(settings.timestep_fs * 1e-3 * MetalUnits.time, **kw)
    kT = torch.tensor(np.asarray(temperatures_K, float) * MetalUnits.temperature, **kw)
    gamma = torch.tensor(settings.friction_per_ps / MetalUnits.time, **kw)
    if settings.ensemble == "nvt":
        return ts.integrators.nvt_langevin(model, dt=dt, kT=kT, gamma=gamma, seed=seed)
    if settings.ensemble == "nve":  # velocity Verlet: no thermostat broadens the phonon lines
        return ts.integrators.nve(model, dt=dt, kT=kT, seed=seed)
    pressure = torch.tensor(settings.pressure_GPa * units.GPa, **kw)  # GPa -> eV/Å^3
    b_tau = torch.tensor(settings.barostat_time_fs * 1e-3 * MetalUnits.time, **kw)
    return ts.integrators.npt_langevin(model, dt=dt, kT=kT, external_pressure=pressure, alpha=gamma,
                                       b_tau=b_tau, seed=seed)


def _frames(state, systems: Sequence[MDSystem], step: int, settings: MDSettings) -> list[Atoms]:
    positions = state.positions.detach().cpu().numpy()
    momenta = state.momenta.detach().cpu().numpy()
    masses = state.masses.detach().cpu().numpy()
    cells = state.row_vector_cell.detach().cpu().numpy()
    energies = state.energy.detach().cpu().numpy()
    index = state.system_idx.cpu().numpy()
    frames = []
    for s, system in enumerate(systems):
        mask = index == s
        atoms = Atoms(system.atoms.numbers, positions=positions[mask], cell=cells[s], pbc=True,
                      masses=masses[mask])
        atoms.set_momenta(momenta[mask])
        atoms.info.update(
            step=step,
            time_fs=step * settings.timestep_fs,
            temperature_K=float(system.temperature_K),  # the set-point (capml.keys)
            kinetic_temperature_K=instantaneous_temperature_K(momenta[mask], masses[mask]),
            energy_eV=float(energies[s]),
            system=system.name,
        )
        frames.append(atoms)
    return frames


def _truncate(path: Path, last_step: int, checkpoint_frame: Atoms, save_every: int) -> None:
    """Drop frames written after the last checkpoint (a kill between the two writes), and write the checkpoint's own
    frame again when the trajectory lost it (torn, and so cut off), so the resumed run leaves no step out."""
    if not path.exists():
        return
    frames = read_complete_frames(path)  # a frame torn by a kill mid-append is cut off
    kept = [f for f in frames if f.info["step"] <= last_step]
    if len(kept) != len(frames):
        write_dataset(path, kept)
    if not kept or kept[-1].info["step"] < last_step:
        if kept and kept[-1].info["step"] + save_every < last_step:
            log.warning("%s: frames between step %d and the checkpoint's step %d are missing", path,
                        kept[-1].info["step"], last_step)
        append_frame(path, checkpoint_frame)


def system_batches(systems: Sequence[MDSystem], max_atoms: int | str | None, device) -> list[list[MDSystem]]:
    """``systems`` in consecutive groups of at most ``max_atoms`` atoms each (see MDSettings), about equally full:
    each group takes systems until it holds the total / ceil(total / max_atoms) atoms or the next would overflow it;
    a system larger than ``max_atoms`` is a group of its own."""
    if max_atoms == "auto":
        max_atoms = None if str(device).startswith("cuda") else cpu_batch_atoms()
    total = sum(len(s.atoms) for s in systems)
    if not max_atoms or total <= max_atoms:
        return [list(systems)]
    target = total / -(-total // int(max_atoms))
    groups, atoms = [[]], 0
    for system in systems:
        n = len(system.atoms)
        if groups[-1] and (atoms >= target or atoms + n > max_atoms):
            groups.append([])
            atoms = 0
        groups[-1].append(system)
        atoms += n
    return groups


def run_md(
    systems: Sequence[MDSystem],
    model,
    out_dir: str | Path,
    settings: MDSettings,
    progress: bool = True,
) -> dict[str, Path]:
    """Run all ``systems`` for ``settings.n_steps``; returns the trajectory path per system.

    ``model`` is a torch-sim ``ModelInterface`` (e.g. :func:`capml.simulate.mlip.batched_model`). The systems run in
    one batch, or in groups of at most ``settings.max_atoms_per_batch`` atoms one after the other (group k of n: its
    checkpoint ``md_state.<k>of<n>.pt``, its noise seeded from (seed, k)). A rerun with the same systems and grouping
    continues from the checkpoints; a finished run returns at once; a folder holding the checkpoints of another
    grouping is refused.
    """
    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise InputError(f"MD systems need distinct names, got {names}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = system_batches(systems, settings.max_atoms_per_batch, model.device)
    n = len(groups)
    planned = [CHECKPOINT] if n == 1 else [f"md_state.{k}of{n}.pt" for k in range(n)]
    other = sorted(p.name for p in out_dir.glob("md_state*.pt") if p.name not in planned)
    if other:
        limit = settings.max_atoms_per_batch
        under = f" = {cpu_batch_atoms()} atoms with {torch.get_num_threads()} torch threads" if limit == "auto" else ""
        raise InputError(f"{out_dir}: holds the MD checkpoints {other} of another grouping of the systems, not "
                         f"{planned} (md.max_atoms_per_batch={limit}{under}); resume with the setting of that run, "
                         "or use another out_dir")
    paths = {}
    for k, group in enumerate(groups):  # one group: the run as it was before grouping (same checkpoint, seed, key)
        seed = settings.seed if k == 0 else int(np.random.SeedSequence([settings.seed, k]).generate_state(1)[0])
        paths |= _run_batch(group, model, out_dir, settings, out_dir / planned[k], seed, progress,
                            f"MD batch {k + 1}/{n}, {len(group)} systems" if n > 1 else None,
                            group_key=[k, n] if n > 1 else None)
    return paths


def _run_batch(systems: Sequence[MDSystem], model, out_dir: Path, settings: MDSettings, checkpoint: Path, seed: int,
               progress: bool, description: str | None = None, group_key: list[int] | None = None) -> dict[str, Path]:
    import torch_sim as ts

    names = [s.name for s in systems]
    paths = {s.name: trajectory_path(out_dir, s.name) for s in systems}
    init, update = _integrator(model, settings, [s.temperature_K for s in systems], seed)
    run_key = _run_key(systems, settings) | ({"group": group_key} if group_key else {}) | _model_key(model)

    if checkpoint.exists():
        saved = load_torch_file(checkpoint, "an MD checkpoint (written by simulate.py stage=md)",
                                map_location=model.device, weights_only=False)
        if not isinstance(saved, dict) or not {"names", "step", "state", "rng_state"} <= set(saved):
            raise InputError(f"{checkpoint}: not an MD checkpoint (expected names, step, state and rng_state); "
                             "use another out_dir or delete it")
        if saved["names"] != names:
            raise InputError(f"{checkpoint}: written for systems {saved['names']}, not {names}; "
                             "use another out_dir or delete it")
        changed = {k: (v, run_key[k]) for k, v in saved.get("run", {}).items() if run_key.get(k) != v}
        if changed:
            what = ", ".join(f"{'md.' if k not in ('model_parameters', 'dtype') else 'model '}{k}={new} (the run has "
                             f"{old})" for k, (old, new) in changed.items())
            raise InputError(f"{checkpoint}: cannot resume with {what}; expected the settings of the run "
                             "(a new run needs another out_dir, or delete this one)")
        state, step = saved["state"], saved["step"]
        torch.set_rng_state(saved["rng_state"])
        for frame, path in zip(_frames(state, systems, step, settings), paths.values()):
            _truncate(path, step, frame, settings.save_every_steps)
        log.info("resuming MD of %d systems at step %d from %s", len(systems), step, checkpoint)
    else:
        for path in paths.values():
            path.unlink(missing_ok=True)
        torch.manual_seed(seed)
        state = init(ts.io.atoms_to_state([s.atoms for s in systems], model.device, model.dtype))
        if all(_has_velocities(s.atoms) for s in systems):  # e.g. thermalised NVT states: continue them
            momenta = np.concatenate([s.atoms.get_momenta() for s in systems])
            state.momenta = torch.as_tensor(momenta, device=model.device, dtype=model.dtype)
        step = 0
        _write(state, systems, step, settings, paths, checkpoint, run_key)

    with tqdm(total=settings.n_steps, initial=step, desc=description or f"MD {len(systems)} systems", unit="step",
              disable=not progress) as bar:
        while step < settings.n_steps:
            n = min(settings.save_every_steps, settings.n_steps - step)
            for _ in range(n):
                state = update(state)
            step += n
            _write(state, systems, step, settings, paths, checkpoint, run_key)
            bar.update(n)
    return paths


def _has_velocities(atoms: Atoms) -> bool:
    return atoms.has("momenta") and bool(np.any(atoms.get_momenta() != 0))


def _run_key(systems, settings: MDSettings) -> dict:
    """What makes a trajectory the same run: a resume with any of it changed is refused (n_steps may grow)."""
    return {"timestep_fs": float(settings.timestep_fs), "friction_per_ps": float(settings.friction_per_ps),
            "seed": int(settings.seed), "ensemble": settings.ensemble, "pressure_GPa": float(settings.pressure_GPa),
            "barostat_time_fs": float(settings.barostat_time_fs), "save_every_steps": int(settings.save_every_steps),
            "temperatures_K": [float(s.temperature_K) for s in systems]}


def _model_key(model) -> dict:
    """The potential and precision of a run: resuming a trajectory on another model or dtype is another run."""
    module = getattr(model, "model", model)
    parameters = list(module.parameters()) if hasattr(module, "parameters") else []
    digest = float(sum(p.detach().double().sum() + p.detach().double().abs().sum() for p in parameters)) \
        if parameters else 0.0
    return {"model_parameters": round(digest, 8), "dtype": str(getattr(model, "dtype", ""))}


def _write(state, systems, step, settings, paths, checkpoint: Path, run_key: dict) -> None:
    for system, frame in zip(systems, _frames(state, systems, step, settings)):
        append_frame(paths[system.name], frame)  # one write and fsync per frame: a kill tears at most the last
    with atomic_path(checkpoint) as tmp:
        torch.save({"names": [s.name for s in systems], "step": step, "state": state,
                    "rng_state": torch.get_rng_state(), "run": run_key}, tmp)
