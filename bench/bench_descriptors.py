"""MACE descriptors as gap-model inputs: capml's batched featuriser against mace-torch's own per-cell
``MACECalculator.get_descriptors``, on the same 40-atom cells in the same run.

    OMP_NUM_THREADS=1 python bench/bench_descriptors.py [--model models/mace_finetuned.model] [--cells 64]

Prints ms per cell for both and their ratio (target: the batched path at least as fast as the per-cell loop, so
a gap ensemble with descriptors costs one MACE call per batch), and checks that both give the same numbers.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from capml.cli import ROOT
from capml.graphs.descriptors import MACEDescriptors
from capml.structures.system import load_system
from capml.structures.thermal import uniform_rattle


def cells(count: int, seed: int = 0):
    system = load_system("ag3sbri")
    decorations = system.decorations(4)
    return [uniform_rattle(system.build(decorations[k % len(decorations)]), 0.15, seed + k) for k in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "mace_finetuned.model"))
    parser.add_argument("--cells", type=int, default=64)
    args = parser.parse_args()
    frames = cells(args.cells)
    featuriser = MACEDescriptors(args.model, batch_size=args.cells)
    featuriser.memory_size = 0  # time the computation, not the memory
    featuriser._compute(frames[:2])  # warm-up
    start = time.perf_counter()
    batched = featuriser._compute(frames)
    t_batched = (time.perf_counter() - start) / len(frames)
    start = time.perf_counter()
    loop = [featuriser.calc.get_descriptors(atoms, invariants_only=True) for atoms in frames]
    t_loop = (time.perf_counter() - start) / len(frames)
    worst = max(float(np.abs(a - b).max()) for a, b in zip(batched, loop))
    print(f"{len(frames)} cells of {len(frames[0])} atoms, {featuriser.width} descriptors per atom")
    print(f"batched featuriser: {1e3 * t_batched:.1f} ms/cell; mace get_descriptors per cell: {1e3 * t_loop:.1f} "
          f"ms/cell; ratio {t_loop / t_batched:.2f}x; largest difference {worst:.1e}")


if __name__ == "__main__":
    main()
