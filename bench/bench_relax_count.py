"""Relaxations needed for every Br/I arrangement of an Ag3SBr(x)I(1-x) supercell (conf/system/ag3sbri.yaml):
symmetry-inequivalent decorations (capml) against all C(n, k) arrangements (the seed code), and the MLIP time that
saves.

    OMP_NUM_THREADS=1 python bench/bench_relax_count.py [--supercell 2 2 2] [--model models/mace_base.model]

Counts come from capml.structures (space-group orbits) and are checked against Burnside's lemma. With
--model, one relaxation per composition is timed with the MLIP and the total for both strategies is
estimated from the mean.
"""

from __future__ import annotations

import argparse
import time
from math import comb


from capml.simulate.mlip import ase_calculator
from capml.simulate.relax import relax
from capml.structures.decorations import burnside_orbit_count, site_permutations
from capml.structures.system import load_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--supercell", type=int, nargs=3, default=[2, 2, 2])
    parser.add_argument("--model", default=None, help="MACE .model file to time relaxations with")
    parser.add_argument("--fmax", type=float, default=0.01)
    args = parser.parse_args()

    system = load_system("ag3sbri", supercell=tuple(args.supercell))
    n = system.n_sites
    parent = system.parent()
    perms = site_permutations(parent, system.site_indices())
    print(f"{len(parent)}-atom supercell {args.supercell}, {n} mixed sites, {len(perms)} symmetry operations")
    print(f"{'k':>3} {'C(n,k)':>8} {'inequivalent':>13} {'Burnside':>9}  multiplicities")
    total_all = total_ineq = 0
    decorations = {}
    for k in range(n + 1):
        decorations[k] = system.decorations(k)
        mults = [d.multiplicity for d in decorations[k]]
        assert sum(mults) == comb(n, k)
        burnside = burnside_orbit_count(perms, k)
        print(f"{k:>3} {comb(n, k):>8} {len(mults):>13} {burnside:>9}  {mults}")
        total_all += comb(n, k)
        total_ineq += len(mults)
    mixed_all = total_all - 2
    mixed_ineq = total_ineq - 2
    print(f"all compositions: {total_ineq} inequivalent vs {total_all} arrangements "
          f"({total_all / total_ineq:.1f}x fewer relaxations)")
    print(f"mixed only (k = 1..{n - 1}, as the seed code): {mixed_ineq} vs {mixed_all} "
          f"({mixed_all / mixed_ineq:.1f}x fewer)")
    if args.model:
        calc = ase_calculator(args.model)
        seconds = []
        for k in range(n + 1):
            start = time.perf_counter()
            result = relax(system.build(decorations[k][0]), calc, fmax_eV_A=args.fmax)
            seconds.append(time.perf_counter() - start)
            print(f"  k={k}: {result.steps} steps, {seconds[-1]:.1f} s, converged={result.converged}")
        mean = sum(seconds) / len(seconds)
        print(f"MLIP relaxation {mean:.1f} s on average: {total_ineq * mean / 60:.1f} min for the inequivalent "
              f"set vs {total_all * mean / 60:.1f} min for every arrangement")


if __name__ == "__main__":
    main()
