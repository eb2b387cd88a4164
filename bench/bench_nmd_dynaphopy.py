"""capml's normal-mode decomposition against DynaPhoPy on the same frames, on a harmonic crystal whose answer is known.

    OMP_NUM_THREADS=1 python bench/bench_nmd_dynaphopy.py [--replicas 8] [--run-ps 20] [--friction-per-ps 3]
        [--segments 2] [--algorithm mem|fft] [--mem-coefficients 300] [--resolution-THz 0.05]

The frames: 2x2x2 conventional Cu (32 atoms), EMT force constants from phonopy, MD on the exact harmonic energy
½ uᵀΦu (tests/simulate/conftest.py's HarmonicModel) with capml's batched Langevin integrator, R independent
replicas at 300 K. The truth is known: every Γ mode of the MD cell sits at phonopy's frequency at the matching
commensurate q-point of the primitive cell, and a Langevin friction γ gives every line of the velocity spectrum a
FWHM of exactly γ / 2π (damped harmonic oscillator; nothing else broadens a harmonic crystal).

Both programs analyse the same frames at the Γ point of the MD cell (DynaPhoPy's unit cell = the MD cell, primitive
matrix = identity, so its Γ modes are capml's): capml through ``capml.simulate.nmd.decompose`` (Welch spectra of the
replicas averaged, Lorentzian fit near each peak, degenerate modes within 0.02 THz fitted once), DynaPhoPy 1.19
through its Python API (``Quasiparticle.get_power_spectrum_phonon`` per replica, MEM by default, spectra averaged
over replicas, then its own ``phonon_fitting_analysis``: Lorentzian plus baseline over the whole range, degenerate
modes within 1e-4 THz averaged). Both report linear frequencies (THz) and full widths at half maximum (THz).

Printed: a table per harmonic level (modes, truth and fitted frequencies, fitted and true FWHM) and the per-mode
summary over the optical modes: max / median relative frequency difference of each program to the truth and to
each other, median |FWHM difference|. Needs the optional extra: pip install -e '.[compare]'.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT

from capml.cli import ROOT
from capml.phonons import full_force_constants, harmonic_phonons
from capml.simulate.md import MDSettings, MDSystem, read_trajectory, run_md
from capml.simulate.nmd import decompose

ALGORITHMS = {"mem": 1, "fft": 2}  # DynaPhoPy's power-spectrum algorithm numbers


def harmonic_copper() -> tuple[Atoms, np.ndarray, np.ndarray]:
    """32-atom Cu, its (32, 32, 3, 3) EMT force constants and the true Γ frequencies of that cell (THz, ascending):
    phonopy's frequencies at the primitive-cell q-points commensurate with it."""
    from phonopy.harmonic.dynmat_to_fc import get_commensurate_points

    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    phonon = harmonic_phonons(cu, EMT(), np.eye(3, dtype=int))
    phonon.run_qpoints(get_commensurate_points(np.rint(np.linalg.inv(phonon.primitive_matrix)).astype(int)))
    truth = np.sort(phonon.get_qpoints_dict()["frequencies"].ravel())
    return cu, full_force_constants(phonon), truth


def langevin_frames(cu: Atoms, fc: np.ndarray, out_dir: Path, replicas: int = 8, run_ps: float = 20.0,
                    discard_ps: float = 2.0, friction_per_ps: float = 3.0, timestep_fs: float = 2.0,
                    save_every_steps: int = 5, seed: int = 1) -> list[list[Atoms]]:
    """``replicas`` harmonic Langevin trajectories of ``run_ps`` each at 300 K, after ``discard_ps`` of equilibration,
    written and read back through capml's MD path."""
    if str(ROOT) not in sys.path:  # the harmonic model is the tests' own
        sys.path.insert(0, str(ROOT))
    from tests.simulate.conftest import HarmonicModel

    steps = int(round((run_ps + discard_ps) * 1000 / timestep_fs))
    paths = run_md([MDSystem(f"cu{i}", cu, 300.0) for i in range(replicas)], HarmonicModel(cu.positions, fc, replicas),
                   out_dir, MDSettings(timestep_fs=timestep_fs, friction_per_ps=friction_per_ps, n_steps=steps,
                                       save_every_steps=save_every_steps, seed=seed), progress=False)
    return [read_trajectory(p, discard_fs=discard_ps * 1000) for p in paths.values()]


def dynaphopy_gamma_fit(trajectories: list[list[Atoms]], reference: Atoms, fc: np.ndarray, algorithm: str = "mem",
                        mem_coefficients: int = 300, resolution_THz: float = 0.05) -> dict:
    """DynaPhoPy's Γ-mode frequencies and FWHM (THz) of the MD cell: its power spectrum of each replica, averaged,
    then its own peak fit. Frequency range 0 to 1.2x the highest harmonic frequency (DynaPhoPy's automatic rule)."""
    import dynaphopy
    from dynaphopy.analysis.fitting import phonon_fitting_analysis
    from dynaphopy.atoms import Structure
    from dynaphopy.dynamics import Dynamics
    from dynaphopy.interface.phonopy_link import ForceConstants

    structure = Structure(cell=reference.cell[:], scaled_positions=reference.get_scaled_positions(),
                          atomic_elements=reference.get_chemical_symbols(), masses=reference.get_masses(),
                          primitive_matrix=np.eye(3),
                          force_constants=ForceConstants(fc, supercell=np.eye(3, dtype=int)))
    to_A_per_ps = 1000 * units.fs  # ASE velocity unit -> Å/ps, DynaPhoPy's
    spectra = []
    with contextlib.redirect_stdout(io.StringIO()):  # DynaPhoPy reports every step on stdout
        for frames in trajectories:
            time_ps = np.array([f.info["time_fs"] for f in frames]) * 1e-3
            velocity = np.stack([f.get_velocities() for f in frames]) * to_A_per_ps
            quasiparticle = dynaphopy.Quasiparticle(Dynamics(structure=structure, velocity=velocity,
                                                             time=time_ps - time_ps[0], supercell=reference.cell[:]))
            quasiparticle.parameters.silent = True
            quasiparticle.select_power_spectra_algorithm(ALGORITHMS[algorithm])
            quasiparticle.set_number_of_mem_coefficients(mem_coefficients)
            harmonic = quasiparticle.get_frequencies()
            quasiparticle.set_spectra_resolution(resolution_THz)
            quasiparticle.set_frequency_limits([0, 1.2 * harmonic.max()])
            spectra.append(quasiparticle.get_power_spectrum_phonon())
        frequency = quasiparticle.get_frequency_range()
        fit = phonon_fitting_analysis(np.mean(spectra, axis=0), frequency, harmonic_frequencies=harmonic,
                                      show_plots=False, use_degeneracy=True, show_occupancy=False)
    return {"harmonic_THz": np.asarray(harmonic), "renormalised_THz": np.asarray(fit["positions"], float),
            "linewidth_THz": np.asarray(fit["widths"], float), "version": dynaphopy.__version__}


def compare(capml: dict, dyn: dict, truth_THz: np.ndarray, truth_fwhm_THz: float) -> dict:
    """Per-mode differences over the optical modes (both programs order modes by ascending harmonic frequency, the
    truth is sorted: checked before comparing)."""
    if not (np.allclose(capml["harmonic_THz"], truth_THz, atol=1e-4)
            and np.allclose(dyn["harmonic_THz"], truth_THz, atol=1e-4)):
        raise RuntimeError("capml's, DynaPhoPy's and phonopy's harmonic frequencies differ: modes cannot be matched")
    optical = ~capml["acoustic"]
    f_true, f_capml, f_dyn = truth_THz[optical], capml["renormalised_THz"][optical], dyn["renormalised_THz"][optical]
    w_capml, w_dyn = capml["linewidth_THz"][optical], dyn["linewidth_THz"][optical]

    def stats(values):
        values = np.abs(values)
        return {"max": float(values.max()), "median": float(np.median(values))}

    return {"frequency_rel": {"capml_truth": stats(f_capml / f_true - 1),
                              "dynaphopy_truth": stats(f_dyn / f_true - 1),
                              "capml_dynaphopy": stats(f_capml / f_dyn - 1)},
            "fwhm_THz": {"capml_truth": stats(w_capml - truth_fwhm_THz),
                         "dynaphopy_truth": stats(w_dyn - truth_fwhm_THz),
                         "capml_dynaphopy": stats(w_capml - w_dyn)},
            "fwhm_median_THz": {"capml": float(np.median(w_capml)), "dynaphopy": float(np.median(w_dyn))}}


def table(capml: dict, dyn: dict, truth_THz: np.ndarray, truth_fwhm_THz: float) -> str:
    """One row per harmonic level (modes within 1e-3 THz): both programs give every member of a degenerate set the
    same fit, so a row stands for all of its modes."""
    rows = [["modes", "truth THz", "capml THz", "DynaPhoPy THz", "capml FWHM", "DynaPhoPy FWHM", "truth FWHM"]]
    optical = np.flatnonzero(~capml["acoustic"])
    levels = np.split(optical, np.flatnonzero(np.diff(truth_THz[optical]) > 1e-3) + 1)
    for members in levels:
        first = members[0]
        rows.append([f"{first}-{members[-1]} ({len(members)})", f"{truth_THz[first]:.3f}",
                     f"{capml['renormalised_THz'][first]:.3f}", f"{dyn['renormalised_THz'][first]:.3f}",
                     f"{capml['linewidth_THz'][first]:.3f}", f"{dyn['linewidth_THz'][first]:.3f}",
                     f"{truth_fwhm_THz:.3f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=8, help="independent Langevin trajectories (one batch)")
    parser.add_argument("--run-ps", type=float, default=20.0, help="analysed length of each trajectory (ps)")
    parser.add_argument("--discard-ps", type=float, default=2.0, help="equilibration dropped first (ps)")
    parser.add_argument("--friction-per-ps", type=float, default=3.0, help="Langevin γ; true FWHM γ / 2π")
    parser.add_argument("--timestep-fs", type=float, default=2.0)
    parser.add_argument("--save-every-steps", type=int, default=5, help="frame spacing (steps)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--segments", type=int, default=2,
                        help="capml Welch segments per trajectory (simulate.nmd.segments, default 2)")
    parser.add_argument("--algorithm", choices=sorted(ALGORITHMS), default="mem",
                        help="DynaPhoPy power spectrum: maximum entropy (its default) or numpy FFT")
    parser.add_argument("--mem-coefficients", type=int, default=300,
                        help="DynaPhoPy MEM order (its default 1000 needs far more frames than the 2,000 here)")
    parser.add_argument("--resolution-THz", type=float, default=0.05,
                        help="DynaPhoPy frequency grid step (its default)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the trajectories here (default: temporary)")
    args = parser.parse_args()
    try:
        import dynaphopy  # noqa: F401
    except ImportError:
        print("bench_nmd_dynaphopy: skipped, DynaPhoPy is not installed (pip install -e '.[compare]')", file=sys.stderr)
        return

    start = time.perf_counter()
    cu, fc, truth = harmonic_copper()
    truth_fwhm = args.friction_per_ps / (2 * np.pi)
    with tempfile.TemporaryDirectory() as tmp:
        trajectories = langevin_frames(cu, fc, args.workdir or Path(tmp), args.replicas, args.run_ps, args.discard_ps,
                                       args.friction_per_ps, args.timestep_fs, args.save_every_steps, args.seed)
    t_md = time.perf_counter() - start
    capml = decompose(trajectories, cu, fc, segments=args.segments, thermostat_fwhm_THz=truth_fwhm)
    t_capml = time.perf_counter() - start - t_md
    dyn = dynaphopy_gamma_fit(trajectories, cu, fc, args.algorithm, args.mem_coefficients, args.resolution_THz)
    t_dyn = time.perf_counter() - start - t_md - t_capml
    result = compare(capml, dyn, truth, truth_fwhm)

    n_frames = len(trajectories[0])
    print(f"harmonic Cu (32 atoms, {int((~capml['acoustic']).sum())} optical Γ modes), Langevin γ = "
          f"{args.friction_per_ps:g} / ps (true FWHM {truth_fwhm:.3f} THz), {args.replicas} replicas x "
          f"{args.run_ps:g} ps, {n_frames} frames each")
    print(f"capml: {args.segments} Welch segment(s) per replica, resolution {capml['resolution_THz']:.3f} THz; "
          f"DynaPhoPy {dyn['version']}: {args.algorithm}"
          + (f" ({args.mem_coefficients} coefficients)" if args.algorithm == "mem" else "")
          + f", grid {args.resolution_THz:g} THz\n")
    print(table(capml, dyn, truth, truth_fwhm))
    print("\nper optical mode          max      median")
    for label, key in (("capml - truth", "capml_truth"), ("DynaPhoPy - truth", "dynaphopy_truth"),
                       ("capml - DynaPhoPy", "capml_dynaphopy")):
        f, w = result["frequency_rel"][key], result["fwhm_THz"][key]
        print(f"freq  {label:18s} {100 * f['max']:6.2f} %  {100 * f['median']:6.2f} %")
        print(f"FWHM  {label:18s} {w['max']:6.3f}    {w['median']:6.3f} THz")
    print(f"median FWHM: capml {result['fwhm_median_THz']['capml']:.3f}, DynaPhoPy "
          f"{result['fwhm_median_THz']['dynaphopy']:.3f}, truth {truth_fwhm:.3f} THz")
    print(f"\nwall time: MD + reading {t_md:.0f} s, capml {t_capml:.1f} s, DynaPhoPy {t_dyn:.0f} s")


if __name__ == "__main__":
    main()
