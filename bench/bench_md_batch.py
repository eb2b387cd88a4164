"""Cost of one batched MACE step (energies and forces) per system against the number of systems in the batch, on
this machine's threads: what `simulate.md.max_atoms_per_batch=auto` (capml/simulate/md.py CPU_BATCH_ATOMS) is set from.

    python bench/bench_md_batch.py [--model models/mace_finetuned.model] [--threads 2]
        [--structures data/ag3sbri/relaxed_rattle_mixed.extxyz] [--systems 4 8 16 42 168]

Copies of the given 40-atom cells, each rattled by 0.05 Å, in one torch-sim state, float32, capml's batched neighbour
list; printed: ms per system-step at each batch size and the ratio to the best.
"""

from __future__ import annotations

import argparse
import time

import torch
from ase.io import read

from capml.simulate.mlip import batched_model


def main(argv=None) -> int:
    import torch_sim as ts

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/mace_finetuned.model")
    p.add_argument("--structures", default="data/ag3sbri/relaxed_rattle_mixed.extxyz")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--systems", type=int, nargs="+", default=[4, 8, 16, 42, 168])
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cells = read(args.structures, ":")
    model = batched_model(args.model, dtype="float32", device=args.device)
    costs = {}
    for n in args.systems:
        atoms = [cells[i % len(cells)].copy() for i in range(n)]
        for k, a in enumerate(atoms):
            a.rattle(0.05, seed=k)
        state = ts.io.atoms_to_state(atoms, torch.device(args.device), torch.float32)
        model(state)  # warm-up (and the neighbour list)
        repeats = max(2, 48 // n)
        start = time.perf_counter()
        for _ in range(repeats):
            model(state)
        costs[n] = 1000 * (time.perf_counter() - start) / repeats / n
    best = min(costs.values())
    print(f"{args.threads} threads, {args.device}, {len(cells[0])}-atom cells")
    print("| systems per batch | atoms | ms per system-step | / best |")
    print("|---|---|---|---|")
    for n, cost in costs.items():
        print(f"| {n} | {n * len(cells[0])} | {cost:.1f} | {cost / best:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
