"""The simulate stages as functions of the composed config, and the pipeline that chains them.

configurations -> phonons -> md -> nmd -> gaps -> modes, each reading the previous stage's files
under ``cfg.workdir`` and skipping work already on disk, so a killed pipeline reruns to completion.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from capml.errors import InputError
from capml.phonons import full_force_constants, load_phonons
from capml.simulate import configurations as conf_stage
from capml.simulate import gaps as gap_stage
from capml.simulate import modes as mode_stage
from capml.simulate import nmd as nmd_stage
from capml.simulate.md import MDSettings, MDSystem, read_trajectory, run_md, trajectory_path
from capml.simulate.mlip import ase_calculator, batched_model, check_elements
from capml.simulate.phonons import config_phonons
from capml.structures.system import SolidSolution, compositions_from_x
from capml.io.jsonio import write_json

log = logging.getLogger("capml.simulate")


def solid_solution(cfg: DictConfig) -> SolidSolution:
    """The material of the ``system`` config group."""
    return SolidSolution.from_config(cfg.system)


def _folder(cfg: DictConfig, name: str) -> Path:
    return Path(cfg.workdir) / name


def _temperatures(cfg: DictConfig) -> list[float]:
    t = cfg.simulate.temperature
    values = [float(t)] if isinstance(t, (int, float)) else [float(v) for v in t]
    if any(v <= 0 for v in values):
        raise InputError(f"simulate.temperature={values}: expected temperatures in K above 0")
    return values


def _compositions(cfg: DictConfig) -> list[int]:
    x = cfg.simulate.x
    x = OmegaConf.to_container(x) if OmegaConf.is_list(x) else x
    return compositions_from_x(x, solid_solution(cfg).n_sites)


def _calculator(cfg: DictConfig):
    calc = ase_calculator(cfg.simulate.mlip_model, cfg.simulate.dtype, cfg.simulate.device)
    check_elements(calc.models[0], solid_solution(cfg).elements, f"simulate.mlip_model={cfg.simulate.mlip_model}")
    return calc


def gap_model(cfg: DictConfig, key: str = "gnn_checkpoint"):
    """The gap model at ``simulate.<key>``: a checkpoint file or a folder of them (an ensemble)."""
    if cfg.simulate[key] is None:
        raise InputError(f"simulate.{key}: not set (the system names no gap model: set system.{key} or "
                         f"simulate.{key} to a checkpoint or a folder of them)")
    path = Path(cfg.simulate[key])
    if not path.exists():
        raise InputError(f"simulate.{key}={path}: GNN checkpoint not found (train one with train.py "
                         "or point it at a .ckpt file or a folder of them, an ensemble)")
    from capml.models.predict import GapPredictor

    model = GapPredictor.from_checkpoint(str(path))
    if not str(model.target).startswith("gap_"):
        raise InputError(f"simulate.{key}={path}: a model of target '{model.target}', expected a band-gap model "
                         "(target gap_<fidelity>)")
    return model


def flag_threshold_eV(cfg: DictConfig, model) -> float:
    """Ensemble spread above which a prediction is flagged as outside the training data: simulate.gaps.flag_std_eV,
    or the value the ensemble folder's ensemble.json records from its calibration."""
    value = cfg.simulate.gaps.get("flag_std_eV")
    if value is not None:
        return float(value)
    card = Path(cfg.simulate.gnn_checkpoint) / "ensemble.json"
    return float(json.loads(card.read_text()).get("flag_std_eV", "nan")) if card.is_file() else float("nan")


def configurations(cfg: DictConfig) -> pd.DataFrame:
    c = cfg.simulate.configurations
    table = conf_stage.relax_configurations(
        solid_solution(cfg), _compositions(cfg), _calculator(cfg), _folder(cfg, "configurations"),
        fmax_eV_A=c.fmax_eV_A, max_steps=c.max_steps, optimizer=c.optimizer, max_enumerate=c.max_enumerate,
        seed=cfg.seed)
    log.info("relaxed %d configurations:\n%s", len(table),
             table[["config_id", "x", "multiplicity", "rank", "above_lowest_meV_per_atom"]].to_string(index=False))
    return table


def _table(cfg: DictConfig) -> pd.DataFrame:
    path = _folder(cfg, "configurations") / conf_stage.TABLE
    if not path.exists():
        raise InputError(f"{path}: not found; run `simulate.py stage=configurations` first")
    table = pd.read_csv(path)
    return table[table["n_occupied"].isin(_compositions(cfg))]


def phonons(cfg: DictConfig) -> dict:
    table, relaxed = _table(cfg), conf_stage.read_relaxed(_folder(cfg, "configurations"))
    calc = _calculator(cfg)
    p = cfg.simulate.phonons
    reports = {}
    for config_id in conf_stage.lowest(table, p.n_lowest)["config_id"]:
        folder = _folder(cfg, "phonons") / config_id
        config_phonons(relaxed[config_id], calc, folder, p.displacement_A, p.symprec)
        reports[config_id] = json.loads((folder / "stability.json").read_text())["verdict"]
    return reports


def _md_systems(cfg: DictConfig) -> list[tuple[str, float, str]]:
    """(config_id, temperature, trajectory name) of every MD run, lowest configurations first; with
    ``simulate.md.replicas`` R > 1, R independent runs of each (their own Maxwell-Boltzmann start and noise: one
    batch, one random stream), named ``<config>_T<T>_r<k>``."""
    chosen = conf_stage.lowest(_table(cfg), cfg.simulate.md.configurations_per_composition)
    replicas = int(cfg.simulate.md.get("replicas") or 1)
    if replicas < 1:
        raise InputError(f"simulate.md.replicas={replicas}: expected an integer >= 1")
    suffixes = [""] if replicas == 1 else [f"_r{k}" for k in range(replicas)]
    return [(cid, t, f"{cid}_T{t:g}{suffix}") for t in _temperatures(cfg) for cid in chosen["config_id"]
            for suffix in suffixes]


def md(cfg: DictConfig) -> dict:
    m = cfg.simulate.md
    settings = MDSettings(timestep_fs=m.timestep_fs, friction_per_ps=m.friction_per_ps, n_steps=m.n_steps,
                          save_every_steps=m.save_every_steps, ensemble=m.ensemble, pressure_GPa=m.pressure_GPa,
                          barostat_time_fs=m.barostat_time_fs, seed=cfg.seed)
    _temperatures(cfg)  # the settings first, then what earlier stages wrote
    relaxed = conf_stage.read_relaxed(_folder(cfg, "configurations"))
    systems = [MDSystem(name, relaxed[cid], t) for cid, t, name in _md_systems(cfg)]
    return run_md(systems, _md_model(cfg, compute_stress=m.ensemble == "npt"), _folder(cfg, "md"), settings)


def _md_model(cfg: DictConfig, compute_stress: bool = False):
    m = cfg.simulate.md
    return batched_model(cfg.simulate.mlip_model, m.dtype, cfg.simulate.device, compute_stress=compute_stress,
                         neighbour_list=m.get("neighbour_list", "batched"), skin_A=float(m.get("skin_A", 1.0)))


def _phonon_configs(cfg: DictConfig) -> list[str]:
    folder = _folder(cfg, "phonons")
    ids = [cid for cid in conf_stage.lowest(_table(cfg), cfg.simulate.phonons.n_lowest)["config_id"]
           if (folder / cid / "phonopy.yaml").exists()]
    if not ids:
        raise InputError(f"{folder}: no harmonic phonons; run `simulate.py stage=phonons` first")
    return ids


def nmd(cfg: DictConfig) -> dict:
    """Renormalised phonons of each configuration with harmonic phonons at every temperature, from all its replicas'
    trajectories; per configuration one plot of the dispersions at 0 K (harmonic) and at every T."""
    relaxed = conf_stage.read_relaxed(_folder(cfg, "configurations"))
    runs = {}
    for cid, t, name in _md_systems(cfg):
        runs.setdefault((cid, t), []).append(name)
    n, m = cfg.simulate.nmd, cfg.simulate.md
    configs = _phonon_configs(cfg)
    if float(n.get("nve_fs") or 0) > 0:  # spectra from NVE segments started from the thermalised states
        folder, discard_fs, thermostat_THz = _nve_segments(cfg, [r for (cid, _), names in runs.items()
                                                                 if cid in configs for r in names]), 0.0, 0.0
    else:  # the Langevin trajectories themselves: their friction γ widens every line by γ / 2π
        folder, discard_fs, thermostat_THz = _folder(cfg, "md"), n.discard_fs, m.friction_per_ps / (2 * np.pi)
    verdicts = {}
    for cid in configs:
        harmonic = load_phonons(_folder(cfg, "phonons") / cid / "phonopy.yaml")
        fc = full_force_constants(harmonic)
        curves = {"0 K (harmonic)": harmonic}
        for t in _temperatures(cfg):
            name = f"{cid}_T{t:g}"
            if (cid, t) not in runs:
                continue  # a configuration with phonons but no MD (phonons.n_lowest above md's count)
            trajectories = [read_trajectory(trajectory_path(folder, run), discard_fs) for run in runs[(cid, t)]]
            result = nmd_stage.decompose(trajectories, relaxed[cid], fc, n.segments, thermostat_THz,
                                         float(n.get("degenerate_THz", nmd_stage.DEGENERATE_THZ)))
            verdicts[name] = nmd_stage.write_results(result, relaxed[cid], t, _folder(cfg, "nmd") / name)
            curves[f"{t:g} K (MD)"] = load_phonons(_folder(cfg, "nmd") / name / "phonopy.yaml")
        if len(curves) > 1:
            nmd_stage.plot_dispersions(curves, _folder(cfg, "nmd") / f"{cid}_dispersions.png",
                                       f"{cid}: harmonic and renormalised dispersions")
    return verdicts


def _nve_segments(cfg: DictConfig, names: list[str]) -> Path:
    """NVE runs of ``simulate.nmd.nve_fs`` from the last frame (positions and velocities) of each MD trajectory,
    all in one batch, in ``<workdir>/nmd/nve/`` (resumable like any MD run); returns that folder."""
    n, m = cfg.simulate.nmd, cfg.simulate.md
    md_folder, out = _folder(cfg, "md"), _folder(cfg, "nmd") / "nve"
    systems = []
    for name in names:
        last = read_trajectory(trajectory_path(md_folder, name))[-1]
        systems.append(MDSystem(name, last, float(last.info["target_temperature_K"])))
    steps = int(round(float(n.nve_fs) / m.timestep_fs))
    settings = MDSettings(timestep_fs=m.timestep_fs, friction_per_ps=m.friction_per_ps, n_steps=steps,
                          save_every_steps=int(n.get("nve_save_every_steps") or m.save_every_steps),
                          ensemble="nve", seed=cfg.seed)
    run_md(systems, _md_model(cfg), out, settings)
    return out


def gaps(cfg: DictConfig) -> pd.DataFrame:
    """Eg(0), <Eg>_T and ΔEg with the gap model (simulate.gnn_checkpoint, HSE06-level by default), and the same
    columns of the model beside it (simulate.gnn_checkpoint_beside, PBEsol) with its fidelity as suffix."""
    model = gap_model(cfg)  # the model first, then what earlier stages wrote
    table = _table(cfg)
    relaxed = conf_stage.read_relaxed(_folder(cfg, "configurations"))
    discard = cfg.simulate.gaps.discard_fs
    auto = str(discard).strip().lower() == "auto"
    if not auto and not isinstance(discard, (int, float)):
        raise InputError(f"simulate.gaps.discard_fs={discard!r}: expected a time in fs or 'auto'")
    runs = [(cid, t, read_trajectory(trajectory_path(_folder(cfg, "md"), name), 0.0 if auto else discard))
            for cid, t, name in _md_systems(cfg)]
    out = _folder(cfg, "gaps")
    out.mkdir(parents=True, exist_ok=True)
    flag = flag_threshold_eV(cfg, model)
    static, per_config, summary, series = _gap_tables(model, table, relaxed, runs, flag, auto)
    if cfg.simulate.get("gnn_checkpoint_beside"):
        beside = gap_model(cfg, "gnn_checkpoint_beside")
        if beside.fidelity != model.fidelity:
            _, other_config, other, _ = _gap_tables(beside, table, relaxed, runs, float("nan"), auto)
            keys = ["x", "temperature_K"]
            columns = ["lowest_gap_0_eV", "lowest_gap_T_eV", "lowest_gap_T_total_err_eV", "lowest_delta_gap_percent",
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
    title = f"gap model: {model.fidelity.upper()}, {model.members} member(s); errors: MD sampling and ensemble"
    x_label = solid_solution(cfg).x_label
    gap_stage.plot_gaps(summary, out / "eg_x_T.png", title=title, x_label=x_label)
    gap_stage.plot_map(summary, out / "eg_map.png", x_label=x_label, title=title)
    simulated = sorted({cid for cid, _, _ in _md_systems(cfg)})
    gap_stage.boltzmann_coverage(table, simulated, _temperatures(cfg)).to_csv(out / "boltzmann_coverage.csv",
                                                                            index=False)
    _log_gap_summary(summary, model, flag, static, per_config, discard)
    return summary


def _gap_tables(model, table: pd.DataFrame, relaxed: dict, runs: list, flag_std_eV: float,
                auto_equilibration: bool = False):
    eg0 = gap_stage.static_gaps(model, {cid: relaxed[cid] for cid in table["config_id"]})
    thermal, series = gap_stage.thermal_gaps(model, runs, auto_equilibration)
    per_config, summary = gap_stage.summarise(table, eg0, thermal)
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
    shown = ["x", "temperature_K", "lowest_gap_0_eV", "lowest_gap_T_eV", "lowest_gap_T_total_err_eV",
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


def modes(cfg: DictConfig) -> dict:
    model = gap_model(cfg)
    relaxed = conf_stage.read_relaxed(_folder(cfg, "configurations"))
    written = {}
    for cid in _phonon_configs(cfg):
        fc = full_force_constants(load_phonons(_folder(cfg, "phonons") / cid / "phonopy.yaml"))
        for t in _temperatures(cfg):
            out = _folder(cfg, "modes") / f"{cid}_T{t:g}"
            out.mkdir(parents=True, exist_ok=True)
            table = mode_stage.frozen_modes(relaxed[cid], fc, model, t, cfg.simulate.modes.acoustic_THz)
            table.to_csv(out / "modes.csv", index=False)
            mode_stage.plot_modes(table, out / "modes.png", f"{cid}, {t:g} K, Eg(0) = {table.attrs['gap_0_eV']:.3f} eV")
            written[f"{cid}_T{t:g}"] = str(out)
    return written


PIPELINE = {"configurations": configurations, "phonons": phonons, "md": md, "nmd": nmd, "gaps": gaps,
            "modes": modes}


def pipeline(cfg: DictConfig) -> Path:
    """All stages in order; prints where each stage's results are."""
    for name, stage in PIPELINE.items():
        log.info("stage %s", name)
        stage(cfg)
    workdir = Path(cfg.workdir).resolve()
    results = {name: str(workdir / name) for name in PIPELINE}
    results["plots"] = sorted(str(p) for p in workdir.glob("*/**/*.png"))
    write_json((workdir / "results.json"), results, indent=1)
    print("capml simulate pipeline results:")
    for name in PIPELINE:
        print(f"  {name:15s} {results[name]}")
    print(f"  Eg(x, T) table  {workdir / 'gaps' / 'gaps_summary.csv'}")
    print(f"  Eg(x, T) plot   {workdir / 'gaps' / 'eg_x_T.png'}")
    print(f"  Eg(x, T) map    {workdir / 'gaps' / 'eg_map.png'}")
    return workdir

