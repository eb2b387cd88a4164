"""Batched relaxation (capml.simulate.relax.relax_batch: FIRE on positions and cell for all structures in one torch-sim
state, one model call per step) against one ASE FIRE + FrechetCellFilter relaxation per structure (relax, the
configurations stage's default).

    OMP_NUM_THREADS=1 python bench/bench_relax.py [--model models/mace_finetuned.model] [--structures 8]
        [--rattle 0.05] [--fmax 0.01] [--device cuda]

N copies of one 40-atom Ag3SBr(x)I(1-x) decoration (x = 1/2), each rattled with its own seed, relaxed both ways on
the same MACE model file in float64 (the relaxations' dtype) to the same fmax. Without --model an untrained MACE with
the bundled base model's architecture is used (bench_md.py). Printed: wall times, relaxations per minute, the speed
ratio, and how far the two agree (steps, energies, positions): the batched relaxer takes ASE's FIRE steps, so the
minima should be the same up to rounding.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench_md import untrained_base_mace
from capml.simulate.mlip import ase_calculator, batched_model
from capml.simulate.relax import relax, relax_batch
from capml.structures.system import load_system


def structures(n: int, rattle_A: float):
    system = load_system("ag3sbri")
    start = system.build(system.decorations(4)[0])
    copies = []
    for seed in range(n):
        atoms = start.copy()
        atoms.rattle(rattle_A, seed=seed)
        copies.append(atoms)
    return copies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="MACE .model file (default: untrained base architecture)")
    parser.add_argument("--structures", type=int, default=8)
    parser.add_argument("--rattle", type=float, default=0.05, help="Å, standard deviation")
    parser.add_argument("--fmax", type=float, default=0.01, help="eV/Å")
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(args.model) if args.model else untrained_base_mace(Path(tmp) / "base.model")
        calculator = ase_calculator(model_path, "float64", args.device)
        model = batched_model(model_path, "float64", args.device, compute_stress=True)
        starts = structures(args.structures, args.rattle)
        relax(starts[0], calculator, args.fmax, 2)  # warm-up: first-call overheads
        relax_batch(starts[:2], model, args.fmax, 2)

        start = time.perf_counter()
        sequential = [relax(atoms, calculator, args.fmax, args.max_steps) for atoms in starts]
        t_ase = time.perf_counter() - start
        start = time.perf_counter()
        batched = relax_batch(starts, model, args.fmax, args.max_steps)
        t_batch = time.perf_counter() - start

    n_atoms = len(starts[0])
    steps_ase, steps_batch = [r.steps for r in sequential], [r.steps for r in batched]
    energy = max(abs(a.energy_eV - b.energy_eV) / n_atoms for a, b in zip(sequential, batched))
    positions = max(np.abs(a.atoms.positions - b.atoms.positions).max() for a, b in zip(sequential, batched))
    converged = sum(r.converged for r in batched), sum(r.converged for r in sequential)
    print(f"model: {args.model or 'untrained base-architecture MACE'} (float64, {args.device}), torch threads "
          f"{torch.get_num_threads()}, {args.structures} structures x {n_atoms} atoms, rattle {args.rattle} Å, "
          f"fmax {args.fmax} eV/Å")
    print(f"steps ASE    : {steps_ase} (converged {converged[1]}/{len(starts)})")
    print(f"steps batched: {steps_batch} (converged {converged[0]}/{len(starts)})")
    print(f"largest difference batched - ASE: {energy:.1e} eV/atom, {positions:.1e} Å")
    print(f"ASE, one relaxation after the other: {t_ase:7.2f} s  {60 * len(starts) / t_ase:6.1f} relaxations/min")
    print(f"batched (relax_batch)              : {t_batch:7.2f} s  {60 * len(starts) / t_batch:6.1f} relaxations/min")
    print(f"speed-up batched / ASE: {t_ase / t_batch:.2f}x")


if __name__ == "__main__":
    main()
