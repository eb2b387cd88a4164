"""Structure -> gap throughput of GapPredictor on 40-atom cells, and peak memory streaming an extxyz file.

    OMP_NUM_THREADS=1 python bench/bench_predict.py [--checkpoint best.ckpt] [--snapshots 10000]

Graphs are built in one thread per torch thread; on a busy machine one thread avoids OpenMP contention.

Without --checkpoint the paper model (conf/model/paper.yaml sizes) is used with untrained weights: the
cost per structure does not depend on the weights. Throughput is measured at batch sizes 1..512; memory
is the peak RSS of a fresh process predicting every snapshot of a file written once to --trajectory
(it streams: one batch in memory at a time). Targets (issue 3): >= 1,000 cells/s on 2 cores end to end;
peak memory <= 1.5 GB whatever the number of snapshots.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from capml.graphs.build import batch_graphs
from capml.graphs.normalise import FeatureScaler, TargetScaler
from capml.models.module import GraphRegressor
from capml.models.predict import GapPredictor
from capml.structures.system import load_system
from capml.structures.thermal import uniform_rattle


def cells(count: int, seed: int = 0):
    system = load_system("ag3sbri")
    decorations = system.decorations(4)
    return [uniform_rattle(system.build(decorations[k % len(decorations)]), 0.15, seed + k) for k in range(count)]


def predictor(checkpoint: str | None, batch_size: int) -> GapPredictor:
    if checkpoint:
        return GapPredictor.from_checkpoint(checkpoint, batch_size=batch_size)
    graph = batch_graphs(cells(8))
    module = GraphRegressor(network={"name": "paper", "hidden": 64, "layers": 2, "dropout": 0.1},
                            head="sigmoid", feature_scaler=FeatureScaler.fit(graph.x.numpy()).to_dict(),
                            target_scaler=TargetScaler.fit(np.array([0.5, 2.0]), "minmax").to_dict(),
                            target="gap_pbesol", cutoff_A=5.5)
    return GapPredictor(module, batch_size=batch_size)


def peak_rss_MB() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stream(path: str, checkpoint: str | None, batch_size: int) -> None:
    """Child process: predict every snapshot of ``path`` and report memory."""
    model = predictor(checkpoint, batch_size)
    before = peak_rss_MB()
    start = time.perf_counter()
    count = sum(len(gaps) for gaps in model.predict_file(path))
    seconds = time.perf_counter() - start
    print(f"{count} {seconds:.2f} {before:.1f} {peak_rss_MB():.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--cells", type=int, default=2048)
    parser.add_argument("--snapshots", type=int, default=10_000)
    parser.add_argument("--trajectory", default="/tmp/capml_bench_snapshots.extxyz")
    parser.add_argument("--stream", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    if args.stream:
        return stream(args.stream, args.checkpoint, args.batch_size)

    structures = cells(args.cells)
    print(f"torch threads {torch.get_num_threads()}, 40-atom cells; end-to-end structure -> gap:")
    print(f"  {'batch':>6s} {'cells/s':>10s} {'graph share':>12s}")
    best = 0.0
    for batch_size in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]:
        model = predictor(args.checkpoint, batch_size)
        subset = structures[: min(len(structures), max(256, 4 * batch_size))]
        model.predict(subset[:batch_size])  # warm-up
        start = time.perf_counter()
        model.predict(subset)
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        for k in range(0, len(subset), batch_size):
            batch_graphs(subset[k:k + batch_size], model.cutoff_A, workers=model.workers)
        graph_seconds = time.perf_counter() - start
        rate = len(subset) / seconds
        best = max(best, rate)
        print(f"  {batch_size:6d} {rate:10.0f} {graph_seconds / seconds:11.0%}")
    print(f"best throughput / target 1,000 cells/s: {best / 1000:.2f}x")

    trajectory = Path(args.trajectory)
    if not trajectory.exists() or sum(1 for line in open(trajectory) if line.startswith("40\n")) != args.snapshots:
        import ase.io

        print(f"writing {args.snapshots} snapshots to {trajectory} ...", flush=True)
        with open(trajectory, "w") as handle:
            for k in range(0, args.snapshots, 500):
                ase.io.write(handle, cells(min(500, args.snapshots - k), seed=k), format="extxyz")
    command = [sys.executable, __file__, "--stream", str(trajectory), "--batch-size", str(args.batch_size)]
    command += ["--checkpoint", args.checkpoint] if args.checkpoint else []
    count, seconds, before, peak = map(float, subprocess.run(command, capture_output=True, text=True,
                                                             check=True).stdout.split())
    print(f"streamed {int(count)} snapshots from extxyz in {seconds:.1f} s ({count / seconds:.0f} cells/s incl. "
          f"parsing); peak RSS {peak:.0f} MB (after loading the model: {before:.0f} MB)")
    print(f"peak memory / target 1.5 GB: {peak / 1536:.2f}x")


if __name__ == "__main__":
    main()
