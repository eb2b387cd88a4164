"""Label inputs for an active-learning round aimed at the MLIP's relaxations (configurations stage):
relaxed decorations spread over the volumes the MLIP reached, points on the path from the unrelaxed decoration to
its MLIP minimum, and strained Vegard cells of random decorations (the equation of state at mixed compositions).

    python tools/relaxation_candidates.py --system cspbbri --workdir runs/cspbbri \
        --out data/cspbbri/round1_structures.extxyz --out-strained data/cspbbri/round1_strained_structures.extxyz \
        --exclude data/cspbbri/relaxed.extxyz --relaxed 6 --path-configs 3 --fractions 0.25 0.5 \
        --strained-x 0.25 0.5 0.75 --strains -3 3 6 --prefix cspbbri_r1_

Label them with the label stage (`tools/label_queue.sh`), then refit with `mlip.extra_train` / `data.extra_train`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from capml.errors import InputError


def main(argv=None) -> int:
    from capml.io.contract import write_dataset
    from capml.io.extxyz import read_structures
    from capml.simulate.active_learning import path_label_inputs, relaxed_label_inputs, strained_label_inputs
    from capml.simulate.configurations import read_relaxed
    from capml.structures.system import load_system

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--system", required=True)
    p.add_argument("--workdir", required=True, type=Path, help="a simulate workdir whose configurations ran")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--out-strained", type=Path)
    p.add_argument("--exclude", nargs="*", default=[], type=Path, help="labelled sets whose configurations to skip")
    p.add_argument("--relaxed", type=int, default=6, help="relaxed mixed decorations, spread over volume")
    p.add_argument("--lowest", type=int, default=0,
                   help="also the N lowest-energy relaxed configurations of every composition (a DFT check)")
    p.add_argument("--path-configs", type=int, default=3, help="lowest mixed decorations to sample a path of")
    p.add_argument("--fractions", type=float, nargs="*", default=[0.25, 0.5])
    p.add_argument("--strained-x", type=float, nargs="*", default=[])
    p.add_argument("--strains", type=float, nargs="*", default=[-3, 3, 6], help="linear strains, %%")
    p.add_argument("--rattle", type=float, default=0.05, help="uniform rattle of strained cells, Å")
    p.add_argument("--prefix", default="")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        import pandas as pd

        system = load_system(a.system)
        table = pd.read_csv(a.workdir / "configurations" / "energies.csv")
        relaxed = read_relaxed(a.workdir / "configurations")
        done = {str(s.info.get("config_id")) for f in a.exclude for s in read_structures(f)}
        mixed = table[(table.x > 0) & (table.x < 1)].sort_values("energy_per_atom_eV")
        source = f"relaxed in {a.workdir}"
        # spread over the volumes reached: equally spaced quantiles of the candidates' volume
        free = mixed[~mixed.config_id.isin(done)].sort_values("volume_A3")
        idx = np.unique(np.round(np.linspace(0, len(free) - 1, a.relaxed)).astype(int)) if a.relaxed else []
        picks = list(free.config_id.iloc[idx])
        lowest = [c for _, part in table.sort_values("energy_per_atom_eV").groupby("x", sort=True)
                  for c in part.config_id.iloc[: a.lowest] if c not in done and c not in picks]
        picks += lowest
        inputs = relaxed_label_inputs([relaxed[c] for c in picks], a.prefix, source)
        for cid in mixed.config_id.iloc[: a.path_configs]:
            inputs += path_label_inputs(system.unrelaxed(relaxed[cid]), relaxed[cid], a.fractions, a.prefix, source)
        write_dataset(a.out, inputs)
        print(f"{len(inputs)} structures -> {a.out}: relaxed {picks}, paths of "
              f"{list(mixed.config_id.iloc[: a.path_configs])} at {a.fractions}")
        if a.strained_x:
            if a.out_strained is None:
                raise InputError("--strained-x needs --out-strained")
            strained = []
            for i, x in enumerate(a.strained_x):
                k = system.occupied_count(x, "--strained-x")
                deco = system.decorations(k, n_random=1, max_enumerate=0, seed=a.seed + i)[0]
                atoms = system.build(deco)
                atoms.info["x"] = float(x)
                strained += strained_label_inputs(atoms, a.strains, a.rattle, a.seed + 100 * i, a.prefix)
            write_dataset(a.out_strained, strained)
            print(f"{len(strained)} strained structures -> {a.out_strained}")
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
