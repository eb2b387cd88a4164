"""Energy conservation against the MD timestep: is 2 fs safe for the map's Langevin MD?

    OMP_NUM_THREADS=1 python bench/bench_timestep.py [--model models/mace_finetuned.model]
        [--structures data/ag3sbri/relaxed_rattle.extxyz] [--temperature 600] [--ps 1.0] [--steps 1 2 3]

Each structure is thermalised by Langevin NVT at 1 fs (400 steps), then continued in NVE (velocity Verlet, torch-sim,
float32, the product's `run_md`) for the same simulated time at every timestep. Printed per timestep: the
fluctuation (standard deviation) and linear drift of the total energy per atom, against kT per atom. Velocity Verlet's
energy error grows as dt²; a timestep is safe when the fluctuation stays a small fraction of kT and there is no drift.
BAOAB Langevin (the map's NVT) samples configurations with an error of the same order in dt as this.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase.io import read
from ase.units import kB

from capml.simulate.md import MDSettings, MDSystem, read_trajectory, run_md
from capml.simulate.mlip import batched_model


def total_energy_per_atom(frames) -> tuple[np.ndarray, np.ndarray]:
    time_fs = np.array([a.info["time_fs"] for a in frames])
    energy = np.array([a.info["energy_eV"] + a.get_kinetic_energy() for a in frames]) / len(frames[0])
    return time_fs, energy


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/mace_finetuned.model")
    p.add_argument("--structures", default="data/ag3sbri/relaxed_rattle.extxyz")
    p.add_argument("--temperature", type=float, default=600.0)
    p.add_argument("--ps", type=float, default=1.0, help="NVE time per timestep")
    p.add_argument("--steps", type=float, nargs="+", default=[1.0, 2.0, 3.0], help="timesteps in fs")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    starts = read(args.structures, ":")
    model = batched_model(args.model, dtype="float32", device=args.device)
    kT_meV = 1000 * kB * args.temperature
    with tempfile.TemporaryDirectory() as tmp:
        systems = [MDSystem(f"s{k}", atoms, args.temperature) for k, atoms in enumerate(starts)]
        paths = run_md(systems, model, Path(tmp) / "nvt", MDSettings(timestep_fs=1.0, n_steps=400, save_every_steps=400,
                                                                     seed=1), progress=False)
        thermal = [read_trajectory(paths[s.name])[-1] for s in systems]
        print(f"{len(starts)} structures of {len(starts[0])} atoms from {args.structures}, {args.temperature:g} K "
              f"(kT = {kT_meV:.1f} meV/atom), {args.ps:g} ps NVE per timestep, {args.model}")
        print("| timestep (fs) | structure | E fluctuation (meV/atom) | drift (meV/atom/ps) | fluctuation / kT | "
              "wall (s) |")
        print("|---|---|---|---|---|---|")
        for dt in args.steps:
            n_steps = int(round(1000 * args.ps / dt))
            save = max(1, int(round(10 / dt)))
            nve = [MDSystem(f"s{k}", atoms, args.temperature) for k, atoms in enumerate(thermal)]
            start = time.perf_counter()
            paths = run_md(nve, model, Path(tmp) / f"nve_{dt:g}", MDSettings(
                timestep_fs=dt, n_steps=n_steps, save_every_steps=save, ensemble="nve"), progress=False)
            wall = time.perf_counter() - start
            for system in nve:
                t_fs, energy = total_energy_per_atom(read_trajectory(paths[system.name]))
                fluctuation = 1000 * energy.std()
                drift = 1000 * np.polyfit(t_fs / 1000, energy, 1)[0]
                print(f"| {dt:g} | {system.name} | {fluctuation:.4f} | {drift:+.4f} | {fluctuation / kT_meV:.1e} | "
                      f"{wall:.0f} |")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "1")))
    raise SystemExit(main())
