"""The simulate stages and the pipeline that chains them.

configurations -> phonons -> md -> nmd -> gaps -> modes, each reading the previous stage's files under the run's
workdir and skipping work already on disk, so a killed pipeline reruns to completion. Every stage is a function
``stage(run, settings)`` of a :class:`~capml.simulate.run.SimulationRun` (folders and shared state, read once per
invocation) and the typed :class:`PipelineSettings`; ``PIPELINE[name](cfg)`` builds both from the composed config.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from capml.errors import InputError
from capml.io.jsonio import write_json
from capml.phonons import load_phonons
from capml.simulate import configurations as conf_stage
from capml.simulate import gaps as gap_stage
from capml.simulate import modes as mode_stage
from capml.simulate import nmd as nmd_stage
from capml.simulate.md import MDSettings, MDSystem, run_md
from capml.phonons import config_phonons
from capml.simulate.run import SimulationRun
from capml.structures.system import SolidSolution

log = logging.getLogger("capml.simulate")


@dataclass(frozen=True)
class ConfigurationSettings:
    fmax_eV_A: float = 0.01
    max_steps: int = 300
    optimizer: str = "FIRE"
    max_enumerate: int = 20000
    random_arrangements: int = 100
    volume_warning_percent: float = 5.0
    relaxer: str = "ase"                # ase | batched (capml.simulate.relax.relax_batch)
    batch_size: int = 32
    rattle_A: float = 0.0               # displace each start before relaxing (off a symmetric saddle point)
    reference: str = "relaxed"          # relaxed | static (the Vegard cell, atoms on their ideal sites, no relaxation)

    def __post_init__(self):
        if self.reference not in conf_stage.REFERENCES:
            raise InputError(f"simulate.configurations.reference={self.reference!r}: expected one of "
                             f"{list(conf_stage.REFERENCES)}")
        if self.reference == "static" and float(self.rattle_A) > 0:
            raise InputError(f"simulate.configurations.reference=static keeps the atoms on their ideal sites: "
                             f"rattle_A={self.rattle_A} expected 0")
        if self.relaxer not in conf_stage.RELAXERS:
            raise InputError(f"simulate.configurations.relaxer={self.relaxer!r}: expected one of "
                             f"{list(conf_stage.RELAXERS)}")
        if self.relaxer == "batched" and self.optimizer != "FIRE":
            raise InputError(f"simulate.configurations.relaxer=batched runs FIRE, not optimizer={self.optimizer}: "
                             "set simulate.configurations.optimizer=FIRE or relaxer=ase")
        if int(self.batch_size) < 1:
            raise InputError(f"simulate.configurations.batch_size={self.batch_size}: expected an integer >= 1")
        if float(self.rattle_A) < 0:
            raise InputError(f"simulate.configurations.rattle_A={self.rattle_A}: expected an amplitude >= 0 (Å)")


@dataclass(frozen=True)
class PhononSettings:
    displacement_A: float = 0.01
    symprec: float = 1e-3


@dataclass(frozen=True)
class NMDSettings:
    discard_fs: float = 200.0
    segments: int = 2
    nve_fs: float = 0.0                 # > 0: spectra from NVE segments of this length (no thermostat broadening)
    nve_save_every_steps: int | None = None
    degenerate_THz: float = nmd_stage.DEGENERATE_THZ


@dataclass(frozen=True)
class GapSettings:
    discard_fs: float | str = 200.0     # or "auto"
    flag_std_eV: float | None = None
    snapshots: int | None = None        # None: one snapshot every τ_int; N: N evenly spaced per run

    def __post_init__(self):
        if self.snapshots is not None and (isinstance(self.snapshots, bool) or not isinstance(self.snapshots, int)
                                           or self.snapshots < 1):
            raise InputError(f"simulate.gaps.snapshots={self.snapshots!r}: expected an integer >= 1 or null")
        if not self.auto and not isinstance(self.discard_fs, (int, float)):
            raise InputError(f"simulate.gaps.discard_fs={self.discard_fs!r}: expected a time in fs or 'auto'")

    @property
    def auto(self) -> bool:
        return str(self.discard_fs).strip().lower() == "auto"


@dataclass(frozen=True)
class ModeSettings:
    acoustic_THz: float = 0.05


@dataclass(frozen=True)
class PipelineSettings:
    """The typed settings of every simulate stage (``simulate.<stage>`` in the config)."""

    configurations: ConfigurationSettings = field(default_factory=ConfigurationSettings)
    phonons: PhononSettings = field(default_factory=PhononSettings)
    md: MDSettings = field(default_factory=MDSettings)
    nmd: NMDSettings = field(default_factory=NMDSettings)
    gaps: GapSettings = field(default_factory=GapSettings)
    modes: ModeSettings = field(default_factory=ModeSettings)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "PipelineSettings":
        s = cfg.simulate

        def pick(group, kind):
            values = OmegaConf.to_container(s[group], resolve=True)
            return kind(**{k: v for k, v in values.items() if k in kind.__dataclass_fields__})

        return cls(configurations=pick("configurations", ConfigurationSettings),
                   phonons=pick("phonons", PhononSettings),
                   md=MDSettings(**{**{k: v for k, v in OmegaConf.to_container(s.md, resolve=True).items()
                                       if k in MDSettings.__dataclass_fields__}, "seed": int(cfg.seed)}),
                   nmd=pick("nmd", NMDSettings), gaps=pick("gaps", GapSettings), modes=pick("modes", ModeSettings))


def solid_solution(cfg: DictConfig) -> SolidSolution:
    """The material of the ``system`` config group."""
    return SolidSolution.from_config(cfg.system)


def configurations(run: SimulationRun, settings: PipelineSettings) -> pd.DataFrame:
    c = settings.configurations
    calculator = run.relax_model() if c.relaxer == "batched" else run.calculator()
    table = conf_stage.relax_configurations(
        run.system, run.compositions, calculator, run.folder("configurations"), fmax_eV_A=c.fmax_eV_A,
        max_steps=c.max_steps, optimizer=c.optimizer, max_enumerate=c.max_enumerate,
        random_arrangements=c.random_arrangements, seed=run.seed, volume_warning_percent=c.volume_warning_percent,
        relaxer=c.relaxer, batch_size=c.batch_size, rattle_A=c.rattle_A, reference=c.reference)
    run.forget("table", "relaxed")
    log.info("relaxed %d configurations:\n%s", len(table),
             table[["config_id", "x", "multiplicity", "rank", "above_lowest_meV_per_atom"]].to_string(index=False))
    return table


def phonons(run: SimulationRun, settings: PipelineSettings) -> dict:
    p = settings.phonons
    reports = {}
    for config_id in run.lowest(run.phonons_n_lowest)["config_id"]:
        folder = run.folder("phonons") / config_id
        config_phonons(run.relaxed()[config_id], run.calculator(), folder, p.displacement_A, p.symprec)
        reports[config_id] = json.loads((folder / "stability.json").read_text())["verdict"]
    return reports


def md(run: SimulationRun, settings: PipelineSettings) -> dict:
    m = settings.md
    systems = [MDSystem(r.name, run.relaxed()[r.config_id], r.temperature_K) for r in run.md_runs()]
    return run_md(systems, run.md_model(compute_stress=m.ensemble == "npt"), run.folder("md"), m)


def nmd(run: SimulationRun, settings: PipelineSettings) -> dict:
    """Renormalised phonons of each configuration with harmonic phonons at every temperature, from all its replicas'
    trajectories; per configuration one plot of the dispersions at 0 K (harmonic) and at every T."""
    n, m = settings.nmd, settings.md
    points = run.runs_by_point()
    configs = run.phonon_configs()
    if float(n.nve_fs or 0) > 0:  # spectra from NVE segments started from the thermalised states
        folder, discard_fs, thermostat_THz = _nve_segments(
            run, settings, [r for (cid, _), rs in points.items() if cid in configs for r in rs]), 0.0, 0.0
    else:  # the Langevin trajectories themselves: their friction γ widens every line by γ / 2π
        folder, discard_fs, thermostat_THz = run.folder("md"), n.discard_fs, m.friction_per_ps / (2 * np.pi)
    verdicts = {}
    for cid in configs:
        reference, fc = run.relaxed()[cid], run.force_constants(cid)
        curves = {"0 K (harmonic)": run.harmonic(cid)}
        for t in run.temperatures_K:
            if (cid, t) not in points:
                continue  # a configuration with phonons but no MD (phonons.n_lowest above md's count)
            name = run.point(cid, t)
            trajectories = [run.trajectory(r, discard_fs, folder) for r in points[(cid, t)]]
            result = nmd_stage.decompose(trajectories, reference, fc, n.segments, thermostat_THz, n.degenerate_THz)
            verdicts[name] = nmd_stage.write_results(result, reference, t, run.folder("nmd") / name)
            curves[f"{t:g} K (MD)"] = load_phonons(run.folder("nmd") / name / "phonopy.yaml")
        if len(curves) > 1:
            nmd_stage.plot_dispersions(curves, run.folder("nmd") / f"{cid}_dispersions.png",
                                       f"{cid}: harmonic and renormalised dispersions")
    return verdicts


def _nve_segments(run: SimulationRun, settings: PipelineSettings, runs: list) -> Path:
    """NVE runs of ``nmd.nve_fs`` from the last frame (positions and velocities) of each MD trajectory, batched as the
    MD is (``md.max_atoms_per_batch``), in ``<workdir>/nmd/nve/`` (resumable like any MD run); returns that folder."""
    from capml.simulate.md import last_frame

    n, m = settings.nmd, settings.md
    out = run.folder("nmd") / "nve"
    systems = []
    for r in runs:
        last = last_frame(run.folder("md"), r.name)
        systems.append(MDSystem(r.name, last, float(last.info["temperature_K"])))
    nve = MDSettings(timestep_fs=m.timestep_fs, friction_per_ps=m.friction_per_ps,
                     n_steps=int(round(float(n.nve_fs) / m.timestep_fs)),
                     save_every_steps=int(n.nve_save_every_steps or m.save_every_steps), ensemble="nve", seed=m.seed,
                     max_atoms_per_batch=m.max_atoms_per_batch)
    run_md(systems, run.md_model(), out, nve)
    return out


def gaps(run: SimulationRun, settings: PipelineSettings) -> pd.DataFrame:
    """Eg(0), <Eg>_T and ΔEg with the gap model (simulate.gnn_checkpoint, HSE06-level by default), and the same
    columns of the model beside it (simulate.gnn_checkpoint_beside, PBEsol) with its fidelity as suffix."""
    g = settings.gaps
    model = run.gap_model()  # the model first, then what earlier stages wrote
    table, relaxed = run.table(), run.relaxed()
    md_runs = run.md_runs()
    runs = [(r.config_id, r.temperature_K, run.trajectory(r, 0.0 if g.auto else g.discard_fs)) for r in md_runs]
    out = run.folder("gaps")
    out.mkdir(parents=True, exist_ok=True)
    flag = run.flag_threshold_eV(g.flag_std_eV)
    static, per_config, summary, series = _gap_tables(model, table, relaxed, runs, flag, g.auto, g.snapshots,
                                                      run.system)
    if run.gnn_checkpoint_beside:
        beside = run.gap_model("gnn_checkpoint_beside")
        if beside.fidelity != model.fidelity:
            _, other_config, other, _ = _gap_tables(beside, table, relaxed, runs, float("nan"), g.auto, g.snapshots,
                                                    run.system)
            keys = ["x", "temperature_K"]
            columns = ["lowest_gap_0_eV", "lowest_gap_0_static_eV", "lowest_gap_T_eV", "lowest_gap_T_total_err_eV", "lowest_delta_gap_percent",
                       "boltzmann_gap_T_eV", "boltzmann_delta_gap_percent"]
            summary = summary.merge(other[keys + columns].rename(columns={c: f"{c}_{beside.fidelity}" for c in columns}),
                                    on=keys, how="left")
            per_config = per_config.merge(
                other_config[["config_id", "temperature_K", "gap_0_eV", "gap_T_eV", "delta_gap_percent"]].rename(
                    columns=lambda c: c if c in ("config_id", "temperature_K") else f"{c}_{beside.fidelity}"),
                on=["config_id", "temperature_K"], how="left")
    static.to_csv(out / "gaps_static.csv", index=False)
    per_config.to_csv(out / "gaps_per_config.csv", index=False)
    summary.to_csv(out / "gaps_summary.csv", index=False)
    series.to_csv(out / "gap_series.csv", index=False)
    reference = str(summary["reference"].iloc[0]) if len(summary) else "relaxed"
    title = (f"gap model: {model.fidelity.upper()}, {model.members} member(s); 0 K reference: {reference}; "
             "errors: MD sampling and ensemble")
    x_label = run.system.x_label
    gap_stage.plot_gaps(summary, out / "eg_x_T.png", title=title, x_label=x_label)
    gap_stage.plot_map(summary, out / "eg_map.png", x_label=x_label, title=title)
    simulated = sorted({r.config_id for r in md_runs})
    gap_stage.boltzmann_coverage(table, simulated, run.temperatures_K).to_csv(out / "boltzmann_coverage.csv",
                                                                             index=False)
    _log_gap_summary(summary, model, flag, static, per_config, g.discard_fs)
    return summary


def _gap_tables(model, table: pd.DataFrame, relaxed: dict, runs: list, flag_std_eV: float,
                auto_equilibration: bool = False, n_snapshots: int | None = None, system: SolidSolution | None = None):
    eg0 = gap_stage.static_gaps(model, {cid: relaxed[cid] for cid in table["config_id"]})
    thermal, series = gap_stage.thermal_gaps(model, runs, auto_equilibration, n_snapshots)
    per_config, summary = gap_stage.summarise(table, eg0, thermal)
    # the 0 K reference by name, and Eg(0) of the static structure (Vegard cell, ideal sites) beside the relaxed one
    reference = table.set_index("config_id")["reference"] if "reference" in table else None
    # a static reference is its own static cell: only relaxed configurations need a second prediction
    static_ids = set(reference[reference == "static"].index) if reference is not None else set()
    static_structures = {cid: system.unrelaxed(relaxed[cid]) for cid in table["config_id"]
                         if cid not in static_ids} if system else {}
    eg0_static = gap_stage.static_gaps(model, static_structures) if static_structures else {}
    eg0_static.update({cid: eg0[cid] for cid in static_ids})
    for frame, config in ((per_config, "config_id"), (summary, "lowest_config")):
        if not len(frame):
            continue
        frame["reference"] = frame[config].map(reference) if reference is not None else "relaxed"
        frame["gap_0_static_eV" if config == "config_id" else "lowest_gap_0_static_eV"] = frame[config].map(
            lambda c: float(eg0_static[c].mean()) if c in eg0_static else float("nan"))
    static = table[["config_id", "x", "multiplicity", "energy_eV", "rank"]].assign(
        gap_0_eV=table["config_id"].map(lambda c: float(eg0[c].mean())),
        gap_0_model_err_eV=table["config_id"].map(lambda c: gap_stage.spread(eg0[c])))
    static["outside_training_data"] = static["gap_0_model_err_eV"] > flag_std_eV
    series["outside_training_data"] = series["gap_std_eV"] > flag_std_eV
    flagged = series.groupby(["config_id", "temperature_K"])["outside_training_data"].mean().rename(
        "snapshots_outside_training_data").reset_index()
    per_config = per_config.merge(flagged, on=["config_id", "temperature_K"], how="left")
    return static, per_config, summary, series


def _log_gap_summary(summary, model, flag_std_eV: float, static, per_config, discard_fs) -> None:
    shown = ["x", "temperature_K", "reference", "lowest_gap_0_eV", "lowest_gap_0_static_eV", "lowest_gap_T_eV", "lowest_gap_T_total_err_eV",
             "lowest_delta_gap_percent", "lowest_delta_gap_percent_err", "lowest_error_from"]
    shown += [c for c in summary.columns
              if c.startswith("lowest_gap_T_eV_") or (c.startswith("lowest_delta_gap_percent_") and not c.endswith("_err"))]
    log.info("Eg(x, T) from the %s gap model (%d members; errors: MD sampling and ensemble spread in quadrature):\n%s",
             model.fidelity.upper(), model.members, summary[shown].round(4).to_string(index=False))
    for cid in static.loc[static["outside_training_data"], "config_id"]:
        log.warning("configuration %s: ensemble spread of Eg(0) above %.3f eV, outside the training data", cid,
                    flag_std_eV)
    unsettled = per_config[per_config["halves_sigma"] > gap_stage.HALVES_SIGMA] if "halves_sigma" in per_config \
        else per_config.iloc[0:0]
    for _, row in unsettled.iterrows():
        log.warning("MD %s at %g K: the two halves of the run (after %g fs equilibration, gaps.discard_fs=%s) differ "
                    "by %.1f standard errors; <Eg>_T is not converged (lengthen md.n_steps)", row["config_id"],
                    row["temperature_K"], row.get("discarded_fs", float("nan")), discard_fs, row["halves_sigma"])
    for _, row in per_config[per_config["snapshots_outside_training_data"] > 0].iterrows():
        log.warning("MD %s at %g K: %.0f %% of the snapshots have an ensemble spread above %.3f eV (outside the "
                    "training data)", row["config_id"], row["temperature_K"],
                    100 * row["snapshots_outside_training_data"], flag_std_eV)


def modes(run: SimulationRun, settings: PipelineSettings) -> dict:
    model = run.gap_model()
    written = {}
    for cid in run.phonon_configs():
        for t in run.temperatures_K:
            name = run.point(cid, t)
            out = run.folder("modes") / name
            out.mkdir(parents=True, exist_ok=True)
            table = mode_stage.frozen_modes(run.relaxed()[cid], run.force_constants(cid), model, t,
                                            settings.modes.acoustic_THz)
            table.to_csv(out / "modes.csv", index=False)
            mode_stage.plot_modes(table, out / "modes.png", f"{cid}, {t:g} K, Eg(0) = {table.attrs['gap_0_eV']:.3f} eV")
            written[name] = str(out)
    return written


def expansion(run: SimulationRun, settings: PipelineSettings) -> pd.DataFrame:
    """Lattice parameter against T and ΔEg(T) with and without thermal expansion (md and gaps in NVT and NPT,
    capml.simulate.expansion); not part of the pipeline."""
    from capml.simulate.expansion import thermal_expansion

    return thermal_expansion(run, settings, md, gaps)


STAGE_FUNCTIONS = {"configurations": configurations, "phonons": phonons, "md": md, "nmd": nmd, "gaps": gaps,
                   "modes": modes}


def _from_config(stage):
    def run_from_config(cfg: DictConfig):
        return stage(SimulationRun.from_config(cfg), PipelineSettings.from_config(cfg))
    run_from_config.__name__, run_from_config.__doc__ = stage.__name__, stage.__doc__
    return run_from_config


PIPELINE = {name: _from_config(stage) for name, stage in STAGE_FUNCTIONS.items()}
EXTRA_STAGES = {"expansion": _from_config(expansion)}


def run_pipeline(run: SimulationRun, settings: PipelineSettings) -> Path:
    """All stages in order on one run (its state read once); prints where each stage's results are."""
    for name, stage in STAGE_FUNCTIONS.items():
        log.info("stage %s", name)
        stage(run, settings)
    workdir = run.workdir.resolve()
    results = {name: str(workdir / name) for name in STAGE_FUNCTIONS}
    results["plots"] = sorted(str(p) for p in workdir.glob("*/**/*.png"))
    write_json((workdir / "results.json"), results, indent=1)
    print("capml simulate pipeline results:")
    for name in STAGE_FUNCTIONS:
        print(f"  {name:15s} {results[name]}")
    print(f"  Eg(x, T) table  {workdir / 'gaps' / 'gaps_summary.csv'}")
    print(f"  Eg(x, T) plot   {workdir / 'gaps' / 'eg_x_T.png'}")
    print(f"  Eg(x, T) map    {workdir / 'gaps' / 'eg_map.png'}")
    return workdir


def pipeline(cfg: DictConfig) -> Path:
    """All stages in order, from the composed config."""
    return run_pipeline(SimulationRun.from_config(cfg), PipelineSettings.from_config(cfg))
