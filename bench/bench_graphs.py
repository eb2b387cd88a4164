"""Graph build per 40-atom Ag3SBr(x)I(1-x) cell: capml's periodic radius graph against

* the seed's explicit-supercell loop (re-implemented here as the baseline: tile the cell 3x3x3, then for
  every atom loop in Python over all 27 x 40 image atoms and keep those within the cutoff), and
* the raw neighbour-list calls it could be built on (vesin, which capml uses, and matscipy; ASE for scale).

    OMP_NUM_THREADS=1 python bench/bench_graphs.py [--cells 200] [--seed-cells 5]

Targets (issue 3): >= 100x the seed loop; <= 2x the raw neighbour-list call.
"""

from __future__ import annotations

import argparse
import itertools
import time
from functools import lru_cache

import numpy as np

from capml.graphs.build import atoms_to_graph
from capml.structures.system import load_system
from capml.structures.thermal import uniform_rattle

CUTOFF_A = 5.5


def seed_supercell_loop(atoms, cutoff_A=CUTOFF_A):
    """The naive seed builder: explicit 3x3x3 supercell, Python loops over atoms and images."""
    cell = np.array(atoms.cell)
    images = []
    for shift in itertools.product((-1, 0, 1), repeat=3):
        for k, position in enumerate(atoms.positions):
            images.append((k, shift, position + np.dot(shift, cell)))
    edges, distances = [], []
    for i, centre in enumerate(atoms.positions):
        for j, shift, position in images:
            if j == i and shift == (0, 0, 0):
                continue
            d = np.sqrt(((position - centre) ** 2).sum())
            if d < cutoff_A:
                edges.append((j, i))
                distances.append(d)
    return edges, distances


@lru_cache(maxsize=1)
def vesin_calculator():
    import vesin

    return vesin.NeighborList(cutoff=CUTOFF_A, full_list=True)


def vesin_call(atoms):
    # one calculator reused for every cell, as capml does
    return vesin_calculator().compute(atoms.positions, atoms.cell[:], True, "ijSd")


def matscipy_call(atoms):
    from matscipy.neighbours import neighbour_list

    return neighbour_list("ijSd", atoms, CUTOFF_A)


def ase_call(atoms):
    from ase.neighborlist import neighbor_list

    return neighbor_list("ijSd", atoms, CUTOFF_A)


def per_cell_seconds(function, cells, repeats=3) -> float:
    function(cells[0])  # warm-up (imports, caches)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for atoms in cells:
            function(atoms)
        best = min(best, (time.perf_counter() - start) / len(cells))
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--seed-cells", type=int, default=5, help="cells timed with the slow seed loop")
    args = parser.parse_args()
    system = load_system("ag3sbri")
    decorations = system.decorations(4)
    cells = [uniform_rattle(system.build(decorations[k % len(decorations)]), 0.15, k) for k in range(args.cells)]

    edges_ours = len(atoms_to_graph(cells[0]).edge_weight)
    edges_seed = len(seed_supercell_loop(cells[0])[0])
    times = {
        "capml atoms_to_graph (vesin + features)": per_cell_seconds(atoms_to_graph, cells),
        "raw vesin": per_cell_seconds(vesin_call, cells),
        "raw matscipy": per_cell_seconds(matscipy_call, cells),
        "raw ase.neighborlist": per_cell_seconds(ase_call, cells[:20], repeats=1),
        "seed 3x3x3 supercell loop": per_cell_seconds(seed_supercell_loop, cells[: args.seed_cells], repeats=1),
    }
    print(f"40-atom cells, cutoff {CUTOFF_A} Å; edges per cell: capml {edges_ours}, seed loop {edges_seed}")
    for name, seconds in times.items():
        print(f"  {name:42s} {seconds * 1e6:12.1f} µs/cell")
    ours = times["capml atoms_to_graph (vesin + features)"]
    print(f"speed-up over the seed loop:          {times['seed 3x3x3 supercell loop'] / ours:8.1f}x  (target >= 100x)")
    print(f"capml graph / raw vesin call:         {ours / times['raw vesin']:8.2f}x  (target <= 2x)")
    print(f"capml graph / raw matscipy call:      {ours / times['raw matscipy']:8.2f}x")
    print(f"matscipy / vesin (raw calls):         {times['raw matscipy'] / times['raw vesin']:8.2f}x")


if __name__ == "__main__":
    main()
