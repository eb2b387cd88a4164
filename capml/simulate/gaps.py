"""Stage 5: band gaps at temperature, Eg(x, T), from the GNN on relaxed structures and MD snapshots.

Eg(0) is the GNN gap of the relaxed configuration. <Eg>_T averages the GNN gap over MD snapshots
after equilibration, spaced by the integrated autocorrelation time of the gap series itself (so
the snapshots are effectively independent and the standard error is honest). Per composition and
temperature two estimates are reported: the lowest-energy configuration, and the Boltzmann average
over configurations with weights m_c exp(-(E_c - E_min)/k_B T) (m_c the multiplicity).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

from matplotlib.figure import Figure  # noqa: E402  (no pyplot: importing capml never switches a backend)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.units import kB  # noqa: E402

from capml.errors import InputError  # noqa: E402


class GapModel(Protocol):
    def predict(self, structures: list[Atoms]) -> np.ndarray: ...


def member_predictions(model: GapModel, structures: list[Atoms]) -> np.ndarray:
    """(members, structures): an ensemble's members (``predict_members``), or one row for a single model."""
    if hasattr(model, "predict_members"):
        return np.asarray(model.predict_members(structures), float)
    return np.asarray(model.predict(structures), float)[None, :]


def spread(values: np.ndarray) -> float:
    """Standard deviation over ensemble members (ddof=1); NaN with one member."""
    values = np.asarray(values, float)
    return float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def quadrature(sampling, model) -> np.ndarray:
    """The MD sampling error and the model error combined in quadrature; a NaN model error (a single model, no
    ensemble) counts as absent, a NaN sampling error (one snapshot) keeps the total NaN."""
    return np.sqrt(np.asarray(sampling, float) ** 2 + np.nan_to_num(np.asarray(model, float)) ** 2)


def integrated_autocorrelation_time(series: np.ndarray, window_factor: float = 5.0) -> float:
    """τ_int = 1 + 2 Σ ρ(t) in units of the series spacing, with Sokal's self-consistent window
    (stop at the first M >= window_factor * τ_int(M)). 1 for uncorrelated data."""
    x = np.asarray(series, float) - np.mean(series)
    n = len(x)
    if n < 4 or not np.any(x):
        return 1.0
    spectrum = np.fft.rfft(x, 2 * n)
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[:n]
    rho = acf / acf[0]
    tau = 1.0 + 2.0 * np.cumsum(rho[1:])
    window = np.flatnonzero(np.arange(1, n) >= window_factor * tau)
    return float(max(1.0, tau[window[0]] if len(window) else tau[-1]))


@dataclass
class ThermalAverage:
    mean: float
    stderr: float
    tau_frames: float
    stride_frames: int
    n_snapshots: int
    indices: np.ndarray           # the frames of the series averaged


def decorrelated_average(series: np.ndarray, n_snapshots: int | None = None) -> ThermalAverage:
    """Mean over snapshots spaced by ceil(τ_int), with the standard error of independent samples.

    ``n_snapshots``: instead, that many snapshots evenly spaced over the series, first and last frame included
    (the rule of a fixed snapshot count, e.g. 10 from the last 15 ps); the standard error is then that of
    ``n_eff = min(n_snapshots, len / τ_int)`` independent samples, so snapshots closer than τ_int do not count twice.
    """
    series = np.asarray(series, float)
    tau = integrated_autocorrelation_time(series)
    if n_snapshots is None:
        stride = int(np.ceil(tau))
        indices = np.arange(0, len(series), stride)
        n_eff = len(indices)
    else:
        if int(n_snapshots) < 1:
            raise InputError(f"gaps.snapshots={n_snapshots}: expected an integer >= 1 (or null: every τ_int)")
        indices = np.unique(np.linspace(0, len(series) - 1, int(n_snapshots)).round().astype(int))
        stride = max(1, int(round(len(series) / len(indices))))
        n_eff = min(len(indices), len(series) / tau)
    snapshots = series[indices]
    n = len(snapshots)
    stderr = float(np.std(snapshots, ddof=1) / np.sqrt(n_eff)) if n > 1 else float("nan")
    return ThermalAverage(float(np.mean(snapshots)), stderr, tau, stride, n, indices)


def boltzmann_weights(energies_eV: np.ndarray, multiplicities: np.ndarray, temperature_K: float) -> np.ndarray:
    """Normalised m_c exp(-(E_c - E_min)/k_B T) over the configurations of one composition."""
    energies = np.asarray(energies_eV, float)
    if temperature_K <= 0:
        w = np.asarray(multiplicities, float) * (energies == energies.min())
    else:
        w = np.asarray(multiplicities, float) * np.exp(-(energies - energies.min()) / (kB * temperature_K))
    return w / w.sum()


def static_gaps(model: GapModel, relaxed: dict[str, Atoms]) -> dict[str, np.ndarray]:
    """Eg(0) per config_id, one batched prediction: every ensemble member's value (an array of one for a
    single model)."""
    ids = list(relaxed)
    members = member_predictions(model, [relaxed[i] for i in ids])
    return {cid: members[:, k] for k, cid in enumerate(ids)}


def equilibration_start(series: np.ndarray, candidates: int = 20) -> int:
    """The first frame to keep: the start t0 (among ``candidates`` evenly spaced ones in the first half) that
    maximises the number of independent snapshots (n - t0) / τ_int(series[t0:]) (Chodera, JCTC 12, 1799 (2016)):
    dropping a drift shortens τ_int by more than it shortens the run."""
    series = np.asarray(series, float)
    n = len(series)
    if n < 8:
        return 0
    starts = np.unique(np.linspace(0, n // 2, candidates).astype(int))
    effective = [(n - t0) / integrated_autocorrelation_time(series[t0:]) for t0 in starts]
    return int(starts[int(np.argmax(effective))])


def thermal_gaps(model: GapModel, runs: Sequence[tuple[str, float, Sequence[Atoms]]],
                 auto_equilibration: bool = False, n_snapshots: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """<Eg>_T per (config_id, temperature) from MD frames; all frames of all runs in one prediction.

    In each run the mean is that of the ensemble-mean series over decorrelated snapshots, with the sampling
    standard error; every member averaged over the same snapshots gives ``gap_T_members_eV`` and the model error
    of the average (``gap_T_model_err_eV``, spread over members: errors shared by all snapshots do not average
    out). Several runs of one (config_id, temperature) are independent replicas: their means are averaged, and
    the sampling error ``gap_T_err_eV`` is the larger of the standard error of the replica means
    (``gap_T_between_err_eV``, what reruns would scatter by) and the within-run errors combined
    (``gap_T_within_err_eV``). ``halves_sigma``: the first and second half of each run (after equilibration)
    apart, in standard errors (the largest over replicas); above 3 the run is not converged. With
    ``auto_equilibration`` each run's start is chosen by :func:`equilibration_start`; ``discarded_fs`` is the MD
    time of the first frame averaged (the latest over replicas). ``n_snapshots``: average that many evenly spaced
    snapshots per run instead of one every τ_int (:func:`decorrelated_average`). Returns the averages and the gap time series (for autocorrelation plots; ``used`` marks the
    frames after equilibration).
    """
    frames = [f for _, _, run in runs for f in run]
    if not frames:
        raise InputError("no MD frames after equilibration to average gaps over; lengthen md.n_steps "
                         "or shorten gaps.discard_fs")
    members = member_predictions(model, frames)
    gaps = members.mean(axis=0)
    stds = members.std(axis=0, ddof=1) if len(members) > 1 else np.full(len(gaps), np.nan)
    per_run, series_rows, start, replica_of = [], [], 0, {}
    for config_id, temperature, run in runs:
        key = (config_id, float(temperature))
        replica = replica_of[key] = replica_of.get(key, -1) + 1
        whole = gaps[start:start + len(run)]
        first = equilibration_start(whole) if auto_equilibration else 0
        series = whole[first:]
        per_member = members[:, start + first:start + len(run)]
        start += len(run)
        spacing_fs = run[1].info["time_fs"] - run[0].info["time_fs"] if len(run) > 1 else float("nan")
        avg = decorrelated_average(series, n_snapshots)
        member_means = per_member[:, avg.indices].mean(axis=1)
        per_run.append({"config_id": config_id, "temperature_K": temperature, "replica": replica,
                        "mean": avg.mean, "err": avg.stderr, "members": member_means,
                        "tau_fs": avg.tau_frames * spacing_fs, "spacing_fs": avg.stride_frames * spacing_fs,
                        "n": avg.n_snapshots, "halves_sigma": halves_sigma(series),
                        "discarded_fs": run[first].info["time_fs"] if len(run) else float("nan")})
        series_rows += [{"config_id": config_id, "temperature_K": temperature, "replica": replica,
                         "time_fs": f.info["time_fs"], "gap_eV": g, "gap_std_eV": e, "used": k >= first}
                        for k, (f, g, e) in enumerate(zip(run, whole, stds[start - len(run):start]))]
    rows = []
    for (config_id, temperature), group in pd.DataFrame(per_run).groupby(["config_id", "temperature_K"],
                                                                          sort=False):
        means, errs = group["mean"].to_numpy(), group["err"].to_numpy()
        replicas = len(group)
        between = float(means.std(ddof=1) / np.sqrt(replicas)) if replicas > 1 else float("nan")
        within = float(np.sqrt(np.sum(errs**2)) / replicas)
        member_means = np.mean(np.stack(list(group["members"])), axis=0)
        rows.append({"config_id": config_id, "temperature_K": temperature, "gap_T_eV": float(means.mean()),
                     "gap_T_err_eV": combined_error(means, errs),
                     "gap_T_between_err_eV": between, "gap_T_within_err_eV": within,
                     "gap_T_model_err_eV": spread(member_means), "gap_T_members_eV": member_means,
                     "replicas": replicas, "tau_fs": float(group["tau_fs"].mean()),
                     "snapshot_spacing_fs": float(group["spacing_fs"].mean()), "n_snapshots": int(group["n"].sum()),
                     "halves_sigma": float(group["halves_sigma"].max()),
                     "discarded_fs": float(group["discarded_fs"].max())})
    return pd.DataFrame(rows), pd.DataFrame(series_rows)


HALVES_SIGMA = 3.0  # halves of a run further apart than this many standard errors: not converged


def combined_error(replica_means: np.ndarray, replica_errors: np.ndarray) -> float:
    """The sampling error of the mean of independent replicas: the larger of the standard error of their means
    and their own errors combined (few replicas scatter little by chance)."""
    means, errs = np.asarray(replica_means, float), np.asarray(replica_errors, float)
    within = float(np.sqrt(np.sum(errs**2)) / len(means))
    if len(means) < 2:
        return within
    return float(max(means.std(ddof=1) / np.sqrt(len(means)), within))


def halves_sigma(series: np.ndarray) -> float:
    """|mean(first half) - mean(second half)| in units of their combined standard error (decorrelated
    snapshots of each half); NaN when a half is too short to have an error."""
    series = np.asarray(series, float)
    half = len(series) // 2
    if half < 4:
        return float("nan")
    a, b = decorrelated_average(series[:half]), decorrelated_average(series[half:])
    err = np.hypot(a.stderr, b.stderr)
    return float(abs(a.mean - b.mean) / err) if err > 0 else float("nan")


def summarise(configs: pd.DataFrame, eg0: dict[str, object], thermal: pd.DataFrame) -> tuple[pd.DataFrame,
                                                                                         pd.DataFrame]:
    """Per-configuration table and per-(x, T) summary: lowest configuration and Boltzmann average.

    ``eg0`` maps config_id to Eg(0) (a number, or the ensemble members' values). Errors (eV): ``*_err_eV`` the MD
    sampling error, ``*_model_err_eV`` the ensemble spread (ΔEg per member, so errors common to Eg(0) and <Eg>_T
    cancel), ``*_total_err_eV`` both in quadrature, and ``*_error_from`` which of the two dominates. In the
    Boltzmann average, sampling errors of different configurations add in quadrature, and the model error is the
    spread over members of each member's own Boltzmann average.
    """
    eg0_members = {cid: np.atleast_1d(np.asarray(v, float)) for cid, v in eg0.items()}
    per_config = thermal.merge(configs[["config_id", "x", "multiplicity", "energy_eV", "rank"]], on="config_id")
    if "gap_T_members_eV" not in per_config:
        per_config["gap_T_members_eV"] = [np.atleast_1d(v) for v in per_config["gap_T_eV"]]
        per_config["gap_T_model_err_eV"] = np.nan
    per_config["gap_0_eV"] = per_config["config_id"].map(lambda c: float(eg0_members[c].mean()))
    per_config["gap_0_model_err_eV"] = per_config["config_id"].map(lambda c: spread(eg0_members[c]))
    per_config["delta_gap_eV"] = per_config["gap_T_eV"] - per_config["gap_0_eV"]
    per_config["delta_gap_percent"] = 100 * per_config["delta_gap_eV"] / per_config["gap_0_eV"]
    per_config["delta_gap_model_err_eV"] = [
        spread(t - eg0_members[c]) if len(t) == len(eg0_members[c]) else float("nan")
        for c, t in zip(per_config["config_id"], per_config["gap_T_members_eV"])]
    per_config["gap_T_total_err_eV"] = quadrature(per_config["gap_T_err_eV"], per_config["gap_T_model_err_eV"])
    per_config["delta_gap_total_err_eV"] = quadrature(per_config["gap_T_err_eV"],
                                                      per_config["delta_gap_model_err_eV"])
    per_config["delta_gap_percent_err"] = 100 * per_config["delta_gap_total_err_eV"] / per_config["gap_0_eV"]
    per_config["error_from"] = dominant(per_config["gap_T_err_eV"], per_config["delta_gap_model_err_eV"])
    rows = []
    for (x, temperature), group in per_config.groupby(["x", "temperature_K"]):
        low = group.loc[group["energy_eV"].idxmin()]
        w = boltzmann_weights(group["energy_eV"], group["multiplicity"], temperature)
        gap_0 = float(w @ group["gap_0_eV"])
        gap_t = float(w @ group["gap_T_eV"])
        sampling = float(np.sqrt(w**2 @ group["gap_T_err_eV"] ** 2))
        # the model error of a Boltzmann average: average each member's own values, then the spread over members
        t_members = np.stack(list(group["gap_T_members_eV"]))
        e0_members = np.stack([eg0_members[c] for c in group["config_id"]])
        paired = t_members.shape == e0_members.shape
        model_t = spread(w @ t_members)
        model_delta = spread(w @ (t_members - e0_members)) if paired else float("nan")
        rows.append({
            "x": x, "temperature_K": temperature,
            "lowest_config": low["config_id"], "lowest_gap_0_eV": low["gap_0_eV"],
            "lowest_gap_0_model_err_eV": low["gap_0_model_err_eV"],
            "lowest_gap_T_eV": low["gap_T_eV"], "lowest_gap_T_err_eV": low["gap_T_err_eV"],
            "lowest_gap_T_model_err_eV": low["gap_T_model_err_eV"],
            "lowest_gap_T_total_err_eV": low["gap_T_total_err_eV"],
            "lowest_delta_gap_eV": low["delta_gap_eV"], "lowest_delta_gap_total_err_eV": low["delta_gap_total_err_eV"],
            "lowest_delta_gap_percent": low["delta_gap_percent"],
            "lowest_delta_gap_percent_err": low["delta_gap_percent_err"], "lowest_error_from": low["error_from"],
            "n_configs": len(group), "boltzmann_gap_0_eV": gap_0, "boltzmann_gap_T_eV": gap_t,
            "boltzmann_gap_T_err_eV": sampling, "boltzmann_gap_T_model_err_eV": model_t,
            "boltzmann_gap_T_total_err_eV": float(quadrature(sampling, model_t)),
            "boltzmann_delta_gap_eV": gap_t - gap_0,
            "boltzmann_delta_gap_total_err_eV": float(quadrature(sampling, model_delta)),
            "boltzmann_delta_gap_percent": 100 * (gap_t - gap_0) / gap_0,
            "boltzmann_error_from": dominant([sampling], [model_delta])[0],
        })
    per_config = per_config.drop(columns=["gap_T_members_eV"])
    return per_config.sort_values(["x", "temperature_K", "rank"]), pd.DataFrame(rows)


def dominant(sampling, model) -> list[str]:
    """"model" or "sampling": the larger of the ensemble spread and the MD sampling error ("sampling" when there
    is no ensemble)."""
    return ["model" if np.isfinite(m) and m > s else "sampling" for s, m in zip(np.asarray(sampling, float),
                                                                              np.asarray(model, float))]


def plot_gaps(summary: pd.DataFrame, path: Path, title: str = "", x_label: str = "x") -> None:
    """Eg(x) per temperature with Eg(0), and ΔEg(x) in %, lowest configuration and Boltzmann average; error bars
    are MD sampling and ensemble spread combined."""
    fig = Figure(figsize=(9, 3.6))
    (ax, bx) = fig.subplots(1, 2)
    for i, (temperature, group) in enumerate(summary.groupby("temperature_K")):
        colour = f"C{i}"
        ax.errorbar(group["x"], group["lowest_gap_T_eV"], group["lowest_gap_T_total_err_eV"], color=colour,
                    marker="o", capsize=2, label=f"{temperature:g} K lowest")
        ax.errorbar(group["x"], group["boltzmann_gap_T_eV"], group["boltzmann_gap_T_total_err_eV"], color=colour,
                    marker="s", ls="--", capsize=2, mfc="none", label=f"{temperature:g} K Boltzmann")
        bx.errorbar(group["x"], group["lowest_delta_gap_percent"], group["lowest_delta_gap_percent_err"],
                    color=colour, marker="o", capsize=2, label=f"{temperature:g} K")
        bx.plot(group["x"], group["boltzmann_delta_gap_percent"], color=colour, marker="s", ls="--", mfc="none")
    static = summary.drop_duplicates("x")
    ax.errorbar(static["x"], static["lowest_gap_0_eV"], static["lowest_gap_0_model_err_eV"].fillna(0), fmt="k:",
                marker=".", capsize=2, label="Eg(0) lowest")
    ax.set_xlabel(x_label)
    ax.set_ylabel("Eg (eV)")
    ax.legend(fontsize=7)
    bx.axhline(0, color="k", lw=0.5)
    bx.set_xlabel(x_label)
    bx.set_ylabel("ΔEg(T)/Eg(0) (%)")
    if title:
        fig.suptitle(title, fontsize=9)
    bx.legend(fontsize=7, title="solid: lowest, dashed: Boltzmann", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def map_table(summary: pd.DataFrame, estimate: str = "lowest") -> pd.DataFrame:
    """Eg(x, T) as a grid (rows: temperatures with 0 K first, Eg(0); columns: compositions) from the summary of
    :func:`summarise`; ``estimate`` is ``lowest`` (the lowest-energy configuration) or ``boltzmann``."""
    if estimate not in ("lowest", "boltzmann"):
        raise ValueError(f"estimate={estimate!r}: expected 'lowest' or 'boltzmann'")
    grid = summary.pivot_table(index="temperature_K", columns="x", values=f"{estimate}_gap_T_eV")
    static = summary.drop_duplicates("x").set_index("x")[f"{estimate}_gap_0_eV"]
    grid.loc[0.0] = static.reindex(grid.columns).to_numpy()
    return grid.sort_index()


def plot_map(summary: pd.DataFrame, path: Path, x_label: str = "x", title: str = "") -> None:
    """The Eg(x, T) map: heat maps of the lowest configuration's gap and of the Boltzmann average (0 K row: Eg(0)),
    and ΔEg(T)/Eg(0) in % against T, one curve per composition (lowest configuration, error bars: MD sampling and
    ensemble spread in quadrature)."""
    fig = Figure(figsize=(13, 4.0))
    axes = fig.subplots(1, 3)
    grids = [map_table(summary, "lowest"), map_table(summary, "boltzmann")]
    low, high = min(np.nanmin(g.to_numpy()) for g in grids), max(np.nanmax(g.to_numpy()) for g in grids)
    for ax, grid, name in zip(axes[:2], grids, ("lowest configuration", "Boltzmann average")):
        xs, ts = grid.columns.to_numpy(float), grid.index.to_numpy(float)
        image = ax.imshow(grid.to_numpy(), origin="lower", aspect="auto", cmap="viridis", vmin=low, vmax=high,
                          extent=(-0.5, len(xs) - 0.5, -0.5, len(ts) - 0.5))
        for i, _ in enumerate(ts):
            for j, _ in enumerate(xs):
                value = grid.to_numpy()[i, j]
                if np.isfinite(value):
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6,
                            color="w" if value < 0.5 * (low + high) else "k")
        ax.set_xticks(range(len(xs)), [f"{x:.3g}" for x in xs], fontsize=7)
        ax.set_yticks(range(len(ts)), [f"{t:g}" for t in ts], fontsize=7)
        ax.set_xlabel(x_label)
        ax.set_ylabel("T (K)")
        ax.set_title(f"Eg(x, T) (eV), {name}", fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.85)
    cx = axes[2]
    for i, (x, group) in enumerate(summary.groupby("x")):
        group = group.sort_values("temperature_K")
        t = np.concatenate([[0.0], group["temperature_K"].to_numpy(float)])
        pct = np.concatenate([[0.0], group["lowest_delta_gap_percent"].to_numpy(float)])
        err = np.concatenate([[0.0], group["lowest_delta_gap_percent_err"].to_numpy(float)])
        cx.errorbar(t, pct, err, marker="o", ms=3, capsize=2, color=f"C{i % 10}", label=f"{x:.3g}")
    cx.axhline(0, color="k", lw=0.5)
    cx.set_xlabel("T (K)")
    cx.set_ylabel("ΔEg(T)/Eg(0) (%), lowest configuration")
    cx.legend(fontsize=6, title=x_label, title_fontsize=7, ncol=2)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def boltzmann_coverage(configs: pd.DataFrame, simulated: Sequence[str], temperatures_K: Sequence[float]) -> pd.DataFrame:
    """Per composition and temperature, the Boltzmann weight (multiplicities and relaxed energies of every
    configuration in ``configs``) that the configurations with MD (``simulated``) carry: the Boltzmann average
    over those is the full one when this is close to 1."""
    rows = []
    for x, group in configs.groupby("x"):
        inside = group["config_id"].isin(list(simulated)).to_numpy()
        for temperature in temperatures_K:
            w = boltzmann_weights(group["energy_eV"], group["multiplicity"], float(temperature))
            rows.append({"x": x, "temperature_K": float(temperature), "configurations": len(group),
                         "with_md": int(inside.sum()), "weight_with_md": float(w[inside].sum())})
    return pd.DataFrame(rows)
