"""Spin-orbit coupling on the band gap: GPAW's non-self-consistent SOC eigenvalues (gpaw.spinorbit) on the label
settings' PBEsol ground state, without and with the non-self-consistent HSE06 correction of the bands near the gap.

    python tools/soc_gaps.py STRUCTURES.extxyz OUT.csv [--window 8] [--limit N]

Per structure (one row, appended as each one finishes, so a rerun skips what is done):
- gap_pbesol_eV, gap_pbesol_soc_eV: PBEsol without and with SOC over all bands;
- gap_pbesol_soc_window_eV: SOC among the ``--window`` bands either side of the gap only (the approximation the
  hybrid row needs), to show what the window costs;
- gap_hse06_eV, gap_hse06_soc_window_eV: the bundled non-self-consistent HSE06 gap without and with SOC (hybrid
  eigenvalues of the window passed to the SOC Hamiltonian).
The settings are conf/labels/gpaw.yaml's (PBEsol, 350 eV, Γ-centred mesh ``--kpts``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from ase.io import read

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from capml.io.rows import RowLog  # noqa: E402
from capml.labels.bandgap import band_gap, calculator_eigenvalues  # noqa: E402
from capml.labels.gpaw import GPAWLabeller  # noqa: E402

FIELDS = ["structure_id", "x", "temperature_K", "kpts", "gap_pbesol_eV", "gap_pbesol_soc_eV",
          "gap_pbesol_soc_window_eV", "gap_hse06_eV", "gap_hse06_soc_window_eV", "seconds"]


def soc_gap(bz, n_filled: int) -> float:
    """Gap of SOC eigenstates (spinors: one electron per state) with ``n_filled`` states filled at every k."""
    e = np.sort(bz.eigenvalues(), axis=-1)
    return float(e[:, n_filled].min() - e[:, n_filled - 1].max())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("structures")
    parser.add_argument("out")
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--kpts", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    from gpaw.hybrids.eigenvalues import non_self_consistent_eigenvalues
    from gpaw.spinorbit import soc_eigenstates

    table = RowLog(args.out, FIELDS)
    done = {sid for sid, in table.done("structure_id")}
    frames = [a for a in read(args.structures, ":") if str(a.info["structure_id"]) not in done]
    labeller = GPAWLabeller(kpts_size=[args.kpts] * 3)
    for k, atoms in enumerate(frames[:args.limit]):
        start = time.time()
        atoms = atoms.copy()
        atoms.calc = calc = labeller.calculator(atoms)
        atoms.get_potential_energy()
        eigs, occs = calculator_eigenvalues(calc)
        n_occ = int((occs[0, 0] > 0.5).sum())
        bz = soc_eigenstates(calc)
        n1, n2 = n_occ - args.window, n_occ + args.window
        window = soc_eigenstates(calc, n1=n1, n2=n2)
        e_dft, v_dft, v_hyb = non_self_consistent_eigenvalues(calc, "HSE06", n1=n1, n2=n2)
        e_hyb = e_dft - v_dft + v_hyb
        hybrid = soc_eigenstates(calc, n1=n1, n2=n2, eigenvalues=e_hyb)
        row = {"structure_id": atoms.info["structure_id"], "x": atoms.info.get("x"),
               "temperature_K": atoms.info.get("temperature", 0.0), "kpts": args.kpts,
               "gap_pbesol_eV": band_gap(eigs, occs).gap_eV,
               "gap_pbesol_soc_eV": soc_gap(bz, 2 * n_occ),
               "gap_pbesol_soc_window_eV": soc_gap(window, 2 * (n_occ - n1)),
               "gap_hse06_eV": band_gap(e_hyb, occs[..., n1:n2], aufbau=True).gap_eV,
               "gap_hse06_soc_window_eV": soc_gap(hybrid, 2 * (n_occ - n1)),
               "seconds": round(time.time() - start, 1)}
        table.append(row)
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
