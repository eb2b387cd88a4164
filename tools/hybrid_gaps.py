"""Hybrid gaps of the static (ideal-site) cells in their 5-atom primitive cell, where hybrids are cheap: the
settings behind the bundled HSE06 labels checked one choice at a time.

    python tools/hybrid_gaps.py STRUCTURES.extxyz OUT.csv --ids static_paper_Ag3SI ... \
        --run k=2:nsc:HSE06 k=2:nsc:HSEsol k=4:nsc:HSE06 k=2:sc:HSE06

Each ``--run`` is ``k=<n>:<nsc|sc>:<hybrid>``: a Γ-centred n x n x n mesh of the primitive cell (n = 2 samples
exactly the k-points of the 40-atom 2x2x2 supercell at Γ, the labels' setting; n = 4 those of the supercell on a
2x2x2 mesh), and either the labels' non-self-consistent hybrid on the PBEsol ground state (``GPAWLabeller``, 350
eV) or a self-consistent hybrid (GPAW's legacy plane-wave hybrid SCF; its semi-local part and PAW setups PBE for
HSE06, PBEsol for HSEsol; without symmetry: with the cubic cell's 48 operations the static Ag3SI cell's SCF did not
converge on the 2x2x2 mesh, its eigenstate residual stuck near 20 eV^2 per electron for 13 iterations). One row per (structure, run), appended as each finishes, so a rerun does only what is
missing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from capml.errors import InputError  # noqa: E402
from capml.io.rows import RowLog  # noqa: E402
from capml.labels.bandgap import band_gap, calculator_eigenvalues  # noqa: E402
from capml.labels.gpaw import EXTRA_HYBRIDS, GPAWLabeller, ensure_setups  # noqa: E402

FIELDS = ["structure_id", "n_atoms_primitive", "kpts", "scf", "hybrid", "gap_pbesol_eV", "gap_hybrid_eV",
          "iterations", "seconds"]


def primitive(atoms: Atoms) -> Atoms:
    """The primitive cell of a symmetric structure (spglib), e.g. the 5-atom cell of a static 2x2x2 supercell."""
    import spglib

    lattice, positions, numbers = spglib.find_primitive(
        (atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers), symprec=1e-3)
    return Atoms(numbers=numbers, cell=lattice, scaled_positions=positions, pbc=True)


def parse_run(text: str) -> tuple[int, str, str]:
    try:
        k, scf, hybrid = text.split(":")
        if not k.startswith("k=") or scf not in ("nsc", "sc"):
            raise ValueError
        return int(k[2:]), scf, hybrid
    except ValueError:
        raise InputError(f"--run {text}: expected k=<n>:<nsc|sc>:<hybrid>, e.g. k=2:nsc:HSE06") from None


def self_consistent_gap(atoms: Atoms, k: int, hybrid: str, ecut_eV: float, txt: str | None) -> tuple[float, int]:
    from gpaw import GPAW, PW, FermiDirac
    from gpaw.hybrids import HybridXC

    if hybrid in EXTRA_HYBRIDS:
        functional = EXTRA_HYBRIDS[hybrid]
        base = functional.setups

        class Named(HybridXC):
            def get_setup_name(self):
                return base

        ensure_setups(atoms.get_chemical_symbols(), base)
        xc = Named(functional.libxc, functional.exx_fraction, functional.omega_per_bohr)
    else:
        xc = HybridXC(hybrid)
    calc = GPAW(mode=PW(ecut_eV), xc=xc, kpts={"size": (k, k, k), "gamma": True}, occupations=FermiDirac(0.01),
                convergence={"bands": "CBM+2", "density": 1e-4, "eigenstates": 1e-4, "energy": 5e-4}, txt=txt,
                legacy_gpaw=True, parallel={"band": 1, "kpt": 1}, symmetry="off")
    atoms = atoms.copy()
    atoms.calc = calc
    atoms.get_potential_energy()
    eigenvalues, occupations = calculator_eigenvalues(calc)
    return band_gap(eigenvalues, occupations).gap_eV, int(calc.get_number_of_iterations())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("structures")
    parser.add_argument("out")
    parser.add_argument("--ids", nargs="+", required=True)
    parser.add_argument("--run", nargs="+", required=True, help="k=<n>:<nsc|sc>:<hybrid>")
    parser.add_argument("--ecut", type=float, default=350.0)
    parser.add_argument("--log-dir", help="GPAW text output of each calculation here")
    args = parser.parse_args(argv)
    try:
        runs = [parse_run(r) for r in args.run]
        frames = {str(a.info.get("structure_id")): a for a in read(args.structures, ":")}
        missing = [i for i in args.ids if i not in frames]
        if missing:
            raise InputError(f"{args.structures}: no structure_id {missing}")
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = RowLog(args.out, FIELDS)
    done = table.done("structure_id", "kpts", "scf", "hybrid")
    for sid in args.ids:
        cell = primitive(frames[sid])
        for k, scf, hybrid in runs:
            if (sid, str(k), scf, hybrid) in done:
                continue
            txt = str(Path(args.log_dir) / f"{sid}_k{k}_{scf}_{hybrid}.txt") if args.log_dir else None
            start = time.time()
            row = {"structure_id": sid, "n_atoms_primitive": len(cell), "kpts": k, "scf": scf, "hybrid": hybrid}
            if scf == "nsc":
                fidelity = hybrid.lower()
                labels = GPAWLabeller(ecut_eV=args.ecut, kpts_size=(k, k, k), hybrid=hybrid, hybrid_fidelity=fidelity,
                                      txt=txt).label(cell, extras=frozenset({fidelity}))
                row.update(gap_pbesol_eV=labels.gaps_eV["pbesol"], gap_hybrid_eV=labels.gaps_eV[fidelity],
                           iterations=np.nan)
            else:
                gap, iterations = self_consistent_gap(cell, k, hybrid, args.ecut, txt)
                row.update(gap_pbesol_eV=np.nan, gap_hybrid_eV=gap, iterations=iterations)
            row["seconds"] = round(time.time() - start, 1)
            table.append(row)
            print(", ".join(f"{key}={value}" for key, value in row.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
