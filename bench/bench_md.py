"""Batched MD (torch-sim, all systems in one model call per step) against one ASE Langevin run per system, with
capml's batched neighbour list (the product path) and with torch-sim's per-system loop.

    OMP_NUM_THREADS=2 python bench/bench_md.py [--model models/mace_finetuned.model] [--systems 8] [--steps 50]
        [--device cuda]

Same MACE model file, same dtype, same 40-atom Ag3SBr(x)I(1-x) cells (one decoration per composition
k = 0..8, cycled), same Langevin settings (1 fs, 5 ps^-1, 300 K). The batched side is the product path
(capml.simulate.md.run_md, trajectory and checkpoint written every 10 steps); the ASE side is
mace-torch's MACECalculator with ase.md.langevin.Langevin, one system after the other. Without --model an
untrained MACE with the bundled base model's architecture (conf/mlip/default.yaml: 32 channels, L=0,
2 interactions, correlation 3, r_max 5 Å) is used: the cost per step does not depend on the weights.
Printed: aggregate throughput (atom-steps/s) of the three and their ratios (issue 13: batched >= 1.5x ASE at 8
systems on a CPU and never slower at any batch size; on a GPU >= 350,000 atom-steps/s at >= 256 systems).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.units import fs

from capml.simulate.md import MDSettings, MDSystem, run_md
from capml.simulate.mlip import ase_calculator, batched_model
from capml.structures.system import load_system


def untrained_base_mace(path: Path) -> Path:
    from mace import modules  # first: mace sets the torch.load flag e3nn's import needs
    from e3nn import o3

    torch.manual_seed(0)
    z = [16, 35, 47, 53]
    model = modules.ScaleShiftMACE(
        r_max=5.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=3,
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        num_interactions=2, num_elements=4, hidden_irreps=o3.Irreps("32x0e"), MLP_irreps=o3.Irreps("16x0e"),
        atomic_energies=np.zeros(4), avg_num_neighbors=30.0, atomic_numbers=z, correlation=3,
        gate=torch.nn.functional.silu, atomic_inter_scale=0.1, atomic_inter_shift=0.0)
    torch.save(model.to(torch.float64), path)
    return path


def cells(n: int):
    system = load_system("ag3sbri")
    picks = [system.build(system.decorations(k)[0]) for k in range(9)]
    return [picks[i % len(picks)] for i in range(n)]


def ase_sequential(model: Path, structures, steps: int, dtype: str, device: str) -> float:
    calc = ase_calculator(model, dtype, device)
    start = time.perf_counter()
    for i, atoms in enumerate(structures):
        atoms = atoms.copy()
        atoms.calc = calc
        MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(i))
        Langevin(atoms, 1.0 * fs, temperature_K=300, friction=5e-3 / fs, rng=np.random.default_rng(i)).run(steps)
    return time.perf_counter() - start


def batched(model: Path, structures, steps: int, dtype: str, device: str, out: Path,
            neighbour_list: str = "batched") -> float:
    torch_model = batched_model(model, dtype, device, neighbour_list=neighbour_list)
    systems = [MDSystem(f"s{i}", atoms, 300.0) for i, atoms in enumerate(structures)]
    start = time.perf_counter()
    run_md(systems, torch_model, out, MDSettings(n_steps=steps, save_every_steps=10), progress=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="MACE .model file (default: untrained base architecture)")
    parser.add_argument("--systems", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--skip-ase", action="store_true", help="only the two batched paths (large batches)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else untrained_base_mace(Path(tmp) / "base.model")
        structures = cells(args.systems)
        ase_sequential(model, structures[:1], 2, args.dtype, args.device)  # warm-up: load, first-call overheads
        batched(model, structures, 2, args.dtype, args.device, Path(tmp) / "warm")
        batched(model, structures, 2, args.dtype, args.device, Path(tmp) / "warm_loop", "per_system")
        t_ase = ase_sequential(model, structures, args.steps, args.dtype, args.device) if not args.skip_ase else None
        t_loop = batched(model, structures, args.steps, args.dtype, args.device, Path(tmp) / "loop", "per_system")
        t_batch = batched(model, structures, args.steps, args.dtype, args.device, Path(tmp) / "md")
    atom_steps = sum(len(a) for a in structures) * args.steps
    print(f"model: {args.model or 'untrained base-architecture MACE'} ({args.dtype}, {args.device}), "
          f"torch threads {torch.get_num_threads()}, {args.systems} systems x {len(structures[0])} atoms x "
          f"{args.steps} steps")
    if t_ase is not None:
        print(f"ASE, one run per system                 : {t_ase:7.2f} s  {atom_steps / t_ase:9.0f} atom-steps/s")
    print(f"torch-sim, per-system neighbour lists   : {t_loop:7.2f} s  {atom_steps / t_loop:9.0f} atom-steps/s")
    print(f"torch-sim, batched neighbour list (capml): {t_batch:7.2f} s  {atom_steps / t_batch:9.0f} atom-steps/s")
    if t_ase is not None:
        print(f"speed-up batched / ASE                  : {t_ase / t_batch:.2f}x")
    print(f"speed-up batched list / per-system lists: {t_loop / t_batch:.2f}x")


if __name__ == "__main__":
    main()
