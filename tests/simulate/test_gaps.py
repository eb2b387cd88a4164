"""Thermal gap statistics against analytic results: AR(1) autocorrelation time and the standard
error of a correlated mean; Boltzmann weights with multiplicities in their limits."""

from __future__ import annotations

from math import comb

import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.units import kB

from capml.errors import InputError
from capml.simulate.gaps import (boltzmann_weights, decorrelated_average, integrated_autocorrelation_time,
                                 summarise, thermal_gaps)


def ar1(rho: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=n) * np.sqrt(1 - rho**2)
    x = np.empty(n)
    x[0] = rng.normal()
    for t in range(1, n):
        x[t] = rho * x[t - 1] + noise[t]
    return x


@pytest.mark.parametrize("rho", [0.0, 0.8, 0.95])
def test_autocorrelation_time_of_ar1_process(rho):
    exact = (1 + rho) / (1 - rho)  # τ_int of AR(1) with lag-1 correlation rho
    taus = [integrated_autocorrelation_time(ar1(rho, 20000, seed)) for seed in range(4)]
    assert np.mean(taus) == pytest.approx(exact, rel=0.1)


def test_standard_error_is_that_of_the_correlated_mean():
    rho, n = 0.9, 4000
    exact_stderr = np.sqrt((1 + rho) / (1 - rho) / n)  # unit-variance AR(1): var(mean) = τ_int / n
    averages = [decorrelated_average(ar1(rho, n, seed)) for seed in range(40)]
    means = np.array([a.mean for a in averages])
    assert np.mean([a.stderr for a in averages]) == pytest.approx(exact_stderr, rel=0.15)
    assert means.std() == pytest.approx(exact_stderr, rel=0.3)
    assert np.mean([a.stride_frames for a in averages]) == pytest.approx((1 + rho) / (1 - rho), rel=0.2)


def test_boltzmann_weights_limits_and_ratio():
    energies = np.array([0.0, 0.02, 0.05])
    multiplicities = np.array([6, 24, 40])
    hot = boltzmann_weights(energies, multiplicities, 1e9)
    np.testing.assert_allclose(hot, multiplicities / comb(8, 4) * 70 / multiplicities.sum(), rtol=1e-6)
    cold = boltzmann_weights(energies, multiplicities, 1.0)
    np.testing.assert_allclose(cold, [1, 0, 0], atol=1e-12)
    w = boltzmann_weights(energies, multiplicities, 300.0)
    assert w[1] / w[0] == pytest.approx(24 / 6 * np.exp(-0.02 / (kB * 300)), rel=1e-12)


class LinearGap:
    """An independent toy gap model: 2 eV minus 0.1 eV per Å of the first atom's x coordinate."""

    def predict(self, structures):
        return np.array([2.0 - 0.1 * a.positions[0, 0] for a in structures])


def trajectory(shift: float, n: int, seed: int) -> list[Atoms]:
    """One H atom whose x coordinate follows an AR(1) series about ``shift`` (Å), a frame every 10 fs."""
    frames = []
    for t, x in enumerate(ar1(0.5, n, seed=seed)):
        atoms = Atoms("H", positions=[[shift + 0.1 * x, 0, 0]])
        atoms.info["time_fs"] = 10.0 * t
        frames.append(atoms)
    return frames


def test_thermal_gaps_and_summary_tables():
    runs = [(config_id, 300.0, trajectory(shift, 400, seed=1)) for config_id, shift in (("a", 0.0), ("b", 1.0))]
    thermal, series = thermal_gaps(LinearGap(), runs)
    assert len(series) == 800
    assert thermal.set_index("config_id").loc["b", "gap_T_eV"] == pytest.approx(1.9, abs=0.01)
    assert (thermal["tau_fs"] > 10).all() and (thermal["snapshot_spacing_fs"] >= 10).all()

    configs = pd.DataFrame({"config_id": ["a", "b"], "x": [0.5, 0.5], "multiplicity": [1, 3],
                            "energy_eV": [0.0, 0.01], "rank": [0, 1]})
    per_config, summary = summarise(configs, {"a": 2.1, "b": 1.8}, thermal)
    row = summary.iloc[0]
    assert row["lowest_config"] == "a"
    assert row["lowest_delta_gap_eV"] == pytest.approx(row["lowest_gap_T_eV"] - 2.1)
    w = boltzmann_weights(np.array([0.0, 0.01]), np.array([1, 3]), 300.0)
    assert row["boltzmann_gap_0_eV"] == pytest.approx(w @ [2.1, 1.8])
    assert row["boltzmann_delta_gap_percent"] == pytest.approx(
        100 * (row["boltzmann_gap_T_eV"] - row["boltzmann_gap_0_eV"]) / row["boltzmann_gap_0_eV"])
    assert set(per_config["delta_gap_percent"].round(6)) == set(
        (100 * (per_config["gap_T_eV"] - per_config["gap_0_eV"]) / per_config["gap_0_eV"]).round(6))


class OffsetEnsemble:
    """Three toy members: LinearGap plus a constant offset each (0, 0.1, 0.2 eV)."""

    offsets = np.array([0.0, 0.1, 0.2])

    def predict_members(self, structures):
        return LinearGap().predict(structures)[None, :] + self.offsets[:, None]

    def predict(self, structures):
        return self.predict_members(structures).mean(0)


def test_ensemble_errors_offsets_cancel_in_delta_and_combine_in_quadrature():
    from capml.simulate.gaps import static_gaps

    frames = trajectory(0.0, 400, seed=2)
    model = OffsetEnsemble()
    thermal, series = thermal_gaps(model, [("a", 300.0, frames)])
    start = Atoms("H", positions=[[0.0, 0, 0]])
    eg0 = static_gaps(model, {"a": start})
    np.testing.assert_allclose(eg0["a"], 2.0 + model.offsets)
    configs = pd.DataFrame({"config_id": ["a"], "x": [0.0], "multiplicity": [1], "energy_eV": [0.0], "rank": [0]})
    per_config, summary = summarise(configs, eg0, thermal)
    row = per_config.iloc[0]
    assert row["gap_0_eV"] == pytest.approx(2.1) and row["gap_0_model_err_eV"] == pytest.approx(0.1)
    # every member averages the same snapshots: <Eg>_T members differ by the offsets, std 0.1 eV
    assert row["gap_T_model_err_eV"] == pytest.approx(0.1)
    # ... and the offsets cancel in ΔEg, so the error of ΔEg is the sampling error alone
    assert row["delta_gap_model_err_eV"] == pytest.approx(0.0, abs=1e-12)
    assert row["delta_gap_total_err_eV"] == pytest.approx(row["gap_T_err_eV"])
    assert row["gap_T_total_err_eV"] == pytest.approx(np.hypot(row["gap_T_err_eV"], 0.1))
    assert row["error_from"] == "sampling"
    assert summary.iloc[0]["lowest_gap_T_total_err_eV"] == pytest.approx(row["gap_T_total_err_eV"])
    assert np.allclose(series["gap_std_eV"], 0.1)


def test_boltzmann_model_error_is_the_spread_of_each_members_average():
    from capml.simulate.gaps import static_gaps

    runs = [(config_id, 300.0, trajectory(shift, 200, seed=3)) for config_id, shift in (("a", 0.0), ("b", 1.0))]
    relaxed = {config_id: Atoms("H", positions=[[shift, 0, 0]]) for config_id, shift in (("a", 0.0), ("b", 1.0))}
    model = OffsetEnsemble()
    thermal, _ = thermal_gaps(model, runs)
    configs = pd.DataFrame({"config_id": ["a", "b"], "x": [0.5, 0.5], "multiplicity": [1, 3],
                            "energy_eV": [0.0, 0.01], "rank": [0, 1]})
    _, summary = summarise(configs, static_gaps(model, relaxed), thermal)
    row = summary.iloc[0]
    # every member is shifted by its own constant: its Boltzmann average too, so the spread is that of the offsets
    assert row["boltzmann_gap_T_model_err_eV"] == pytest.approx(0.1)
    # ... and ΔEg of every member is the same: no model error in ΔEg, only the combined sampling error
    assert row["boltzmann_delta_gap_total_err_eV"] == pytest.approx(row["boltzmann_gap_T_err_eV"])


def correlated_trajectory(n: int, seed: int, rho: float = 0.95) -> list[Atoms]:
    """A strongly correlated AR(1) gap series (τ_int = 39 frames) carried by one atom's x coordinate."""
    frames = []
    for t, x in enumerate(ar1(rho, n, seed=seed)):
        atoms = Atoms("H", positions=[[x, 0, 0]])
        atoms.info["time_fs"] = 10.0 * t
        frames.append(atoms)
    return frames


@pytest.mark.parametrize("replicas", [4, 8])
def test_the_error_of_replicas_covers_the_spread_of_reruns(replicas):
    """60 independent reruns of `replicas` replicas each, 600 frames a run with τ_int = 39 frames (the demo's
    regime): the reported sampling error of <Eg>_T matches the scatter of the reruns' averages (within 25 %), and
    1σ covers about 68 % of them (at least half, at most 85 %). One run alone underestimates it by about 25 %
    here (τ_int from 15 correlation times is biased low), which is why replicas carry the error."""
    means, errors = [], []
    for rerun in range(60):
        runs = [("a", 300.0, correlated_trajectory(600, seed=1000 * rerun + r)) for r in range(replicas)]
        thermal, series = thermal_gaps(LinearGap(), runs)
        row = thermal.iloc[0]
        assert row["replicas"] == replicas and sorted(series["replica"].unique()) == list(range(replicas))
        means.append(row["gap_T_eV"])
        errors.append(row["gap_T_err_eV"])
    means, errors = np.array(means), np.array(errors)
    truth = 2.0  # the AR(1) series has mean 0
    assert means.std(ddof=1) == pytest.approx(np.mean(errors), rel=0.25)
    covered = np.mean(np.abs(means - truth) <= errors)
    assert 0.5 <= covered <= 0.85


def test_halves_of_a_drifting_run_disagree():
    from capml.simulate.gaps import HALVES_SIGMA, halves_sigma

    steady = ar1(0.5, 2000, seed=3)
    drifting = steady + np.linspace(0.0, 2.0, 2000)  # not equilibrated: the gap drifts through the run
    assert halves_sigma(steady) < HALVES_SIGMA < halves_sigma(drifting)


def test_automatic_equilibration_drops_the_transient():
    """A gap that relaxes from 0.8 eV above its mean with a 300-frame time constant: the automatic start drops the
    transient, the fixed start at 0 keeps it and is biased, and the kept part's average is the true one."""
    from capml.simulate.gaps import equilibration_start

    n = 3000
    transient = 0.8 * np.exp(-np.arange(n) / 300.0)
    means = {"auto": [], "fixed": []}
    for seed in range(10):
        runs = [("a", 300.0, [_frame_at(x, t) for t, x in enumerate(ar1(0.8, n, seed) * 0.1 + transient)])]
        fixed, _ = thermal_gaps(ShiftGap(), runs)
        thermal, series = thermal_gaps(ShiftGap(), runs, auto_equilibration=True)
        means["fixed"].append(fixed["gap_T_eV"].iloc[0])
        means["auto"].append(thermal["gap_T_eV"].iloc[0])
        t0 = equilibration_start(ar1(0.8, n, seed) * 0.1 + transient)
        assert 600 <= t0 <= n // 2  # past two time constants of the transient
        assert thermal["discarded_fs"].iloc[0] == 10.0 * t0 and not series["used"].iloc[0]
    assert abs(np.mean(means["auto"])) < 0.02 < np.mean(means["fixed"])


class ShiftGap:
    """The gap is the first atom's x coordinate (eV per Å)."""

    def predict(self, structures):
        return np.array([a.positions[0, 0] for a in structures])


def _frame_at(x: float, t: int) -> Atoms:
    atoms = Atoms("H", positions=[[x, 0, 0]])
    atoms.info["time_fs"] = 10.0 * t
    return atoms


def test_map_table_puts_eg0_at_zero_kelvin_and_the_plot_is_written(tmp_path):
    from capml.simulate.gaps import map_table, plot_map

    runs = [(cid, t, trajectory(shift + t / 1000, 200, seed=int(t))) for cid, shift in (("a", 0.0), ("c", 2.0))
            for t in (300.0, 600.0)]
    thermal, _ = thermal_gaps(LinearGap(), runs)
    configs = pd.DataFrame({"config_id": ["a", "c"], "x": [0.0, 1.0], "multiplicity": [1, 1],
                            "energy_eV": [0.0, 0.0], "rank": [0, 0]})
    _, summary = summarise(configs, {"a": 2.0, "c": 1.8}, thermal)
    grid = map_table(summary, "lowest")
    assert list(grid.index) == [0.0, 300.0, 600.0] and list(grid.columns) == [0.0, 1.0]
    assert grid.loc[0.0].tolist() == [2.0, 1.8]  # Eg(0) of each composition in the 0 K row
    # LinearGap: 2 - 0.1 x(H); the H atom sits at shift + T/1000 on average
    assert grid.loc[600.0, 1.0] == pytest.approx(2.0 - 0.1 * 2.6, abs=0.01)
    assert grid.loc[300.0, 0.0] == pytest.approx(2.0 - 0.1 * 0.3, abs=0.01)
    assert map_table(summary, "boltzmann").equals(grid)  # one configuration per composition: the same numbers
    plot_map(summary, tmp_path / "map.png", x_label="x (fraction of Br)")
    assert (tmp_path / "map.png").stat().st_size > 10_000


def test_boltzmann_coverage_is_the_weight_of_the_simulated_configurations():
    from capml.simulate.gaps import boltzmann_coverage

    configs = pd.DataFrame({"config_id": ["a", "b", "c"], "x": [0.5] * 3, "multiplicity": [2, 4, 8],
                            "energy_eV": [0.0, 0.05, 1.0]})
    table = boltzmann_coverage(configs, ["a", "b"], [300.0, 1e9])
    e = np.array([0.0, 0.05, 1.0])
    for temperature, got in zip((300.0, 1e9), table["weight_with_md"]):
        w = np.array([2, 4, 8]) * np.exp(-e / (kB * temperature))
        assert got == pytest.approx(w[:2].sum() / w.sum())
    assert table["weight_with_md"].iloc[1] == pytest.approx(6 / 14, rel=1e-4)  # high T: multiplicities alone


def test_a_fixed_snapshot_count_takes_evenly_spaced_frames_and_counts_only_independent_ones():
    series = np.arange(101, dtype=float)  # a ramp: the mean of 10 evenly spaced frames is known exactly
    avg = decorrelated_average(series, n_snapshots=11)
    np.testing.assert_array_equal(avg.indices, np.arange(0, 101, 10))
    assert avg.mean == pytest.approx(50.0) and avg.n_snapshots == 11
    # white noise: 10 snapshots of 4000 frames are independent, the error is that of 10 samples
    rng_means = [decorrelated_average(np.random.default_rng(s).normal(size=4000), n_snapshots=10) for s in range(200)]
    assert np.mean([a.stderr for a in rng_means]) == pytest.approx(1 / np.sqrt(10), rel=0.15)
    # strongly correlated: 50 snapshots of an AR(1) run with τ_int = 39 frames over 400 frames are ~10 independent
    corr = [decorrelated_average(ar1(0.95, 400, s), n_snapshots=50) for s in range(60)]
    assert np.mean([a.stderr for a in corr]) == pytest.approx(np.std([a.mean for a in corr]), rel=0.35)
    with pytest.raises(InputError, match="snapshots=0"):
        decorrelated_average(series, n_snapshots=0)
