"""Normal-mode decomposition of MD velocities: temperature-renormalised phonons.

The MD cell is a supercell; its Γ modes are all the phonons commensurate with it. Each frame's
mass-weighted velocities are projected onto the harmonic eigenvectors, q̇_s(t) = Σ_i √m_i e_s,i·v_i(t),
for all modes and frames in one matrix product. The power spectrum of each q̇_s (Welch-averaged)
is fitted with a Lorentzian, giving the renormalised frequency and the linewidth (FWHM) of the mode.
Renormalised force constants Φ = M^½ E diag(ω²) Eᵀ M^½ rebuilt from the fitted frequencies give
the renormalised dispersion through phonopy (interpolated from the commensurate q-points), the same
construction as DynaPhoPy's. DynaPhoPy 1.19 (optional extra `compare`) runs with phonopy 4.10; bench/bench_nmd_dynaphopy.py compares the two.

Modes degenerate in the harmonic reference (within ``degenerate_THz``) are fitted once, on their
summed spectra: a sum over an orthonormal basis of a degenerate subspace does not depend on which basis the
eigensolver returned, a single mode's spectrum does.

Every linewidth comes with the spectral resolution it was measured at (the FWHM a perfectly sharp line gets from
the Hann-windowed Welch segments: 1.44 / segment length) and, for Langevin trajectories, the broadening the
thermostat adds to every mode (friction γ: FWHM γ / 2π); ``intrinsic_linewidth_THz`` is the fitted width less the
thermostat's, and ``resolved`` says whether it exceeds the resolution. NVE segments started from the thermalised
states (``simulate.nmd.nve_fs``) carry no thermostat broadening.

A mode harmonic-imaginary at 0 K is dynamically stabilised at T when its spectral weight sits at a real frequency:
both the fitted centre and the median of its power spectrum (half the power below, half above; no fit, no clamp)
lie above the resolution and the imaginary-mode threshold. The verdict lists those modes, the ones that stay soft
and the ones the run cannot resolve.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from matplotlib.figure import Figure  # noqa: E402  (no pyplot: importing capml never switches a backend)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from ase import Atoms  # noqa: E402
from phonopy import Phonopy  # noqa: E402
from scipy.optimize import curve_fit  # noqa: E402
from scipy.signal import welch  # noqa: E402

from capml.errors import InputError  # noqa: E402
from capml.io.jsonio import write_json  # noqa: E402
from capml.phonons import (  # noqa: E402
    IMAGINARY_THZ, gamma_modes, primitive_matrix, renormalised_force_constants, save_dispersion_plot, save_phonons,
    to_phonopy_atoms)

FS_TO_PS = 1e-3
HANN_FWHM_BINS = 1.44  # FWHM of a sharp line's Hann-windowed power spectrum, in bins of 1 / segment length
DEGENERATE_THZ = 0.02


@dataclass
class ModeSpectra:
    frequencies_THz: np.ndarray  # (n_freq,)
    power: np.ndarray  # (n_modes, n_freq)
    resolution_THz: float = 0.0  # FWHM of a perfectly sharp line in these spectra


def mode_velocities(velocities: np.ndarray, masses: np.ndarray, eigenvectors: np.ndarray) -> np.ndarray:
    """(n_frames, n_modes) mass-weighted normal-mode velocities from (n_frames, n_atoms, 3) velocities."""
    n_frames = velocities.shape[0]
    weighted = (velocities * np.sqrt(masses)[None, :, None]).reshape(n_frames, -1)
    return weighted @ eigenvectors


def power_spectra(mode_v: np.ndarray, sample_fs: float, segments: int = 4) -> ModeSpectra:
    """Welch power spectra of every mode at once; ``segments`` trades resolution for noise."""
    n = mode_v.shape[0]
    nperseg = max(8, n // segments)
    # zero-padding interpolates each segment's spectrum, so a peak narrower than a few bins is fitted unbiased
    rate_THz = 1.0 / (sample_fs * FS_TO_PS)
    freq, power = welch(mode_v, fs=rate_THz, nperseg=nperseg, nfft=4 * nperseg, window="hann", axis=0,
                        detrend=False, scaling="density")
    return ModeSpectra(freq, power.T, HANN_FWHM_BINS * rate_THz / nperseg)


def degenerate_sets(frequencies_THz: np.ndarray, tolerance_THz: float = DEGENERATE_THZ) -> list[np.ndarray]:
    """Mode indices grouped by (near-)equal frequency: sorted, split where neighbours differ by more than
    ``tolerance_THz``."""
    order = np.argsort(frequencies_THz)
    breaks = np.flatnonzero(np.diff(frequencies_THz[order]) > tolerance_THz) + 1
    return np.split(order, breaks)


def median_frequency(freq: np.ndarray, power: np.ndarray) -> np.ndarray:
    """Frequency below which half of each mode's spectral power lies (zero-frequency bin excluded)."""
    cumulative = np.cumsum(power[..., 1:], axis=-1)
    half = cumulative[..., -1:] / 2
    return freq[1:][np.argmax(cumulative >= half, axis=-1)]


def lorentzian(f, amplitude, centre, fwhm):
    return amplitude / (1.0 + ((f - centre) / (0.5 * fwhm)) ** 2)


def fit_lorentzian(freq: np.ndarray, power: np.ndarray, window_THz: float | None = None) -> tuple[float, float]:
    """(centre, FWHM) in THz of the dominant peak; the fit uses the region around the maximum."""
    peak = int(np.argmax(power[1:])) + 1  # the zero-frequency bin holds no vibrational peak
    df = freq[1] - freq[0]
    half = power[peak] / 2
    above = np.flatnonzero(power >= half)
    width0 = max(df, (above.max() - above.min()) * df) if len(above) else df
    window = window_THz if window_THz is not None else max(5 * width0, 6 * df)
    sel = (freq > freq[peak] - window) & (freq < freq[peak] + window) & (freq > 0)
    try:
        (amp, centre, fwhm), _ = curve_fit(
            lorentzian, freq[sel], power[sel], p0=(power[peak], freq[peak], width0),
            bounds=([0, max(freq[peak] - window, 0), df / 100], [np.inf, freq[peak] + window, 10 * window]),
            maxfev=5000)
    except (RuntimeError, ValueError):
        return float(freq[peak]), float(width0)
    return float(centre), float(abs(fwhm))


def decompose(trajectories: Sequence[Sequence[Atoms]], reference: Atoms, force_constants: np.ndarray,
              segments: int = 4, thermostat_fwhm_THz: float = 0.0, degenerate_THz: float = DEGENERATE_THZ) -> dict:
    """Harmonic vs renormalised frequency and linewidth of every Γ mode of the MD supercell.

    ``trajectories`` are one or more runs of the same system at the same temperature (e.g. replicas
    batched in one MD call); their spectra are averaged, which lowers the noise of every fit. Modes
    degenerate within ``degenerate_THz`` share one fit of their summed spectra. ``thermostat_fwhm_THz``
    is what the dynamics add to every linewidth (Langevin friction γ: γ / 2π; NVE: 0).
    """
    for frames in trajectories:
        if len(frames) < 16:
            raise InputError(f"normal-mode decomposition needs >= 16 MD frames with velocities, got {len(frames)}")
        if len(frames[0]) != len(reference):
            raise InputError(f"MD frames have {len(frames[0])} atoms, the harmonic reference {len(reference)}")
    harmonic, vectors = gamma_modes(reference, force_constants)
    masses = reference.get_masses()
    spectra = []
    for frames in trajectories:
        sample_fs = frames[1].info["time_fs"] - frames[0].info["time_fs"]
        velocities = np.stack([f.get_velocities() for f in frames])  # Å per ASE time unit
        spectra.append(power_spectra(mode_velocities(velocities, masses, vectors), sample_fs, segments))
    freq = spectra[0].frequencies_THz
    if any(len(s.frequencies_THz) != len(freq) or not np.allclose(s.frequencies_THz, freq) for s in spectra):
        raise InputError("trajectories for one normal-mode decomposition need equal lengths and sampling")
    power = np.mean([s.power for s in spectra], axis=0)
    resolution = spectra[0].resolution_THz
    acoustic = np.isin(np.arange(len(harmonic)), np.argsort(np.abs(harmonic))[:3])
    renormalised = np.zeros(len(harmonic))
    linewidth = np.full(len(harmonic), np.nan)
    degenerate_set = np.full(len(harmonic), -1)
    sets = [m[~acoustic[m]] for m in degenerate_sets(harmonic, degenerate_THz)]
    for k, members in enumerate(m for m in sets if len(m)):
        power[members] = power[members].mean(axis=0)  # basis-independent: the subspace's mean spectrum
        renormalised[members], linewidth[members] = fit_lorentzian(freq, power[members[0]])
        degenerate_set[members] = k
    intrinsic = np.clip(linewidth - thermostat_fwhm_THz, 0.0, None)
    return {
        "harmonic_THz": harmonic,
        "renormalised_THz": renormalised,
        "linewidth_THz": linewidth,
        "intrinsic_linewidth_THz": intrinsic,
        "median_THz": np.where(acoustic, 0.0, median_frequency(freq, power)),
        "resolution_THz": resolution,
        "thermostat_fwhm_THz": float(thermostat_fwhm_THz),
        "resolved": ~acoustic & (intrinsic > resolution),
        "degenerate_set": degenerate_set,
        "acoustic": acoustic,
        "eigenvectors": vectors,
        "spectra": ModeSpectra(freq, power, resolution),
    }


def stabilisation_verdict(result: dict, imaginary_THz: float = IMAGINARY_THZ) -> dict:
    """Which harmonic-imaginary modes the MD shows real (dynamically stabilised): fitted centre and spectral
    median both above the resolution and |imaginary_THz|; a centre below the resolution is 'unresolved'."""
    harmonic, renorm = result["harmonic_THz"], result["renormalised_THz"]
    resolution = float(result.get("resolution_THz", 0.0))
    median = result.get("median_THz", renorm)
    floor = max(resolution, abs(imaginary_THz))
    soft = np.flatnonzero((harmonic < imaginary_THz) & ~result["acoustic"])
    stabilised = [int(s) for s in soft if renorm[s] > floor and median[s] > floor]
    unresolved = [int(s) for s in soft if renorm[s] <= resolution]
    if not len(soft):
        verdict = "harmonically stable: no imaginary Γ modes of the supercell"
    elif len(stabilised) == len(soft):
        verdict = f"dynamically stabilised: all {len(soft)} imaginary harmonic modes are real at this temperature"
    else:
        verdict = f"{len(soft) - len(stabilised)} of {len(soft)} imaginary harmonic modes stay soft"
        if unresolved:
            verdict += f" ({len(unresolved)} peak below the {resolution:.2f} THz resolution: run longer)"
    return {
        "verdict": verdict,
        "resolution_THz": round(resolution, 4),
        "imaginary_harmonic_modes": [
            {"mode": int(s), "harmonic_THz": round(float(harmonic[s]), 4),
             "renormalised_THz": round(float(renorm[s]), 4), "median_THz": round(float(median[s]), 4)}
            for s in soft],
        "stabilised_modes": stabilised,
        "unresolved_modes": unresolved,
    }


def renormalised_phonons(reference: Atoms, result: dict) -> Phonopy:
    """phonopy object carrying the renormalised force constants (primitive cell found by phonopy)."""
    fc = renormalised_force_constants(result["eigenvectors"], result["renormalised_THz"], reference.get_masses())
    cell = to_phonopy_atoms(reference)
    phonon = Phonopy(cell, supercell_matrix=np.eye(3, dtype=int), primitive_matrix=primitive_matrix(cell, 1e-3),
                     symprec=1e-3)
    phonon.force_constants = fc
    return phonon


def write_results(result: dict, reference: Atoms, temperature_K: float, out_dir: str | Path) -> str:
    """modes.csv, verdict.json, spectra.png and the renormalised dispersion (dispersion.png,
    phonopy.yaml with the renormalised force constants) in ``out_dir``; returns the verdict."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = len(result["harmonic_THz"])
    columns = {"harmonic_THz": result["harmonic_THz"], "renormalised_THz": result["renormalised_THz"],
               "median_THz": result.get("median_THz", result["renormalised_THz"]),
               "linewidth_THz": result["linewidth_THz"],
               "intrinsic_linewidth_THz": result.get("intrinsic_linewidth_THz", result["linewidth_THz"]),
               "resolution_THz": np.full(n, result.get("resolution_THz", np.nan)),
               "thermostat_fwhm_THz": np.full(n, result.get("thermostat_fwhm_THz", np.nan)),
               "resolved": result.get("resolved", np.zeros(n, bool)),
               "degenerate_set": result.get("degenerate_set", np.full(n, -1)), "acoustic": result["acoustic"]}
    pd.DataFrame(columns).to_csv(out / "modes.csv", index_label="mode")
    verdict = stabilisation_verdict(result) | {"temperature_K": temperature_K}
    write_json((out / "verdict.json"), verdict, indent=1)

    spectra = result["spectra"]
    fig = Figure(figsize=(9, 3.6))
    (ax, bx) = fig.subplots(1, 2)
    top = spectra.power / spectra.power.max(axis=1, keepdims=True).clip(min=1e-300)
    ax.imshow(top[np.argsort(result["renormalised_THz"])], aspect="auto", origin="lower", cmap="magma",
              extent=(spectra.frequencies_THz[0], spectra.frequencies_THz[-1], 0, len(top)))
    ax.set_xlim(0, 1.3 * max(1.0, result["renormalised_THz"].max()))
    ax.set_xlabel("frequency (THz)")
    ax.set_ylabel("mode (sorted)")
    ax.set_title(f"mode power spectra, {temperature_K:g} K", fontsize=9)
    optical = ~result["acoustic"]
    bx.errorbar(result["harmonic_THz"][optical], result["renormalised_THz"][optical],
                yerr=0.5 * result["linewidth_THz"][optical], fmt="o", ms=3, capsize=1,
                label=f"bars: FWHM / 2; resolution {result.get('resolution_THz', float('nan')):.2f} THz")
    bx.legend(fontsize=7, loc="upper left")
    lim = [min(0, result["harmonic_THz"].min()), result["renormalised_THz"].max() * 1.1]
    bx.plot(lim, lim, "k:", lw=0.8)
    bx.set_xlabel("harmonic Γ frequency (THz; imaginary < 0)")
    bx.set_ylabel(f"renormalised at {temperature_K:g} K (THz)")
    bx.set_title(verdict["verdict"], fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "spectra.png", dpi=120)

    phonon = renormalised_phonons(reference, result)
    phonon.auto_band_structure(npoints=51)
    save_dispersion_plot(phonon, out / "dispersion.png", f"renormalised dispersion at {temperature_K:g} K")
    save_phonons(phonon, out / "phonopy.yaml")
    return verdict["verdict"]


def plot_dispersions(curves: dict[str, Phonopy], path: str | Path, title: str = "") -> Path:
    """Dispersions of one structure at several temperatures on one plot (the first entry, usually the harmonic 0 K
    one, sets the band path; the others are computed on the same q-points when their primitive cell is the same,
    else on their own automatic path, stretched to the same length). Imaginary frequencies are drawn negative."""
    names = list(curves)
    reference = curves[names[0]]
    if reference.band_structure is None:
        reference.auto_band_structure(npoints=51)
    ref = reference.band_structure
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    total = ref.distances[-1][-1]
    for i, name in enumerate(names):
        phonon = curves[name]
        if i and np.allclose(phonon.primitive.cell, reference.primitive.cell, atol=1e-6):
            phonon.run_band_structure(ref.qpoints, path_connections=ref.path_connections, labels=ref.labels)
        elif phonon.band_structure is None:
            phonon.auto_band_structure(npoints=51)
        bands = phonon.band_structure
        scale = total / bands.distances[-1][-1]
        for k, (d, f) in enumerate(zip(bands.distances, bands.frequencies)):
            lines = ax.plot(np.asarray(d) * scale, f, color=f"C{i % 10}", lw=0.9)
            if k == 0:
                lines[0].set_label(name)
    ends = [d[-1] for d in ref.distances]
    for x in [0.0, *ends]:
        ax.axvline(x, color="k", lw=0.4)
    if ref.labels:
        ticks, labels, k = [0.0], [ref.labels[0]], 1
        for end, connected in zip(ends, ref.path_connections):
            ticks.append(end)
            labels.append(ref.labels[k] if connected or k + 1 >= len(ref.labels)
                          else f"{ref.labels[k]}|{ref.labels[k + 1]}")
            k += 1 if connected else 2
        ax.set_xticks(ticks, labels)
    ax.axhline(0, color="k", lw=0.4, ls=":")
    ax.set_xlim(0, total)
    ax.set_ylabel("frequency (THz; imaginary < 0)")
    ax.legend(fontsize=7, loc="upper right")  # "best" searches every line point: slow, and warns so
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)
