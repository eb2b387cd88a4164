"""The simulate stages as functions of the composed config, and the pipeline that chains them.

configurations -> phonons -> md -> nmd -> gaps -> modes, each reading the previous stage's files
under ``cfg.workdir`` and skipping work already on disk, so a killed pipeline reruns to completion.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from capml.errors import InputError
from capml.simulate import configurations as conf_stage
from capml.simulate import gaps as gap_stage
from capml.simulate import modes as mode_stage
from capml.simulate import nmd as nmd_stage
from capml.simulate.md import MDSettings, MDSystem, read_trajectory, run_md, trajectory_path
from capml.simulate.mlip import ase_calculator, batched_model
from capml.simulate.phonons import config_phonons
from capml.structures.sampler import SolidSolution
from capml.structures.thermal import full_force_constants, load_phonons

log = logging.getLogger("capml.simulate")


def solid_solution(cfg: DictConfig) -> SolidSolution:
    s = cfg.structures.system
    return SolidSolution(s.a_site, s.b_site, tuple(s.halides), dict(s.lattice_constants), tuple(s.supercell))


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
    return conf_stage.compositions_from_x(x, conf_stage.n_halide_sites(solid_solution(cfg)))


def _calculator(cfg: DictConfig):
    return ase_calculator(cfg.simulate.mlip_model, cfg.simulate.dtype, cfg.simulate.device)


def gap_model(cfg: DictConfig):
    path = Path(cfg.simulate.gnn_checkpoint)
    if not path.is_file():
        raise InputError(f"simulate.gnn_checkpoint={path}: GNN checkpoint not found (train one with train.py "
                         "or point simulate.gnn_checkpoint at a .ckpt file)")
    from capml.models.predict import GapPredictor

    return GapPredictor.from_checkpoint(str(path))


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
    """(config_id, temperature, trajectory name) of every MD run, lowest configurations first."""
    chosen = conf_stage.lowest(_table(cfg), cfg.simulate.md.configurations_per_composition)
    return [(cid, t, f"{cid}_T{t:g}") for t in _temperatures(cfg) for cid in chosen["config_id"]]


def md(cfg: DictConfig) -> dict:
    m = cfg.simulate.md
    relaxed = conf_stage.read_relaxed(_folder(cfg, "configurations"))
    systems = [MDSystem(name, relaxed[cid], t) for cid, t, name in _md_systems(cfg)]
    settings = MDSettings(timestep_fs=m.timestep_fs, friction_per_ps=m.friction_per_ps, n_steps=m.n_steps,
                          save_every_steps=m.save_every_steps, ensemble=m.ensemble, pressure_GPa=m.pressure_GPa,
                          barostat_time_fs=m.barostat_time_fs, seed=cfg.seed)
    model = batched_model(cfg.simulate.mlip_model, m.dtype, cfg.simulate.device,
                          compute_stress=m.ensemble == "npt")
    return run_md(systems, model, _folder(cfg, "md"), settings)


def _phonon_configs(cfg: DictConfig) -> list[str]:
    folder = _folder(cfg, "phonons")
    ids = [cid for cid in conf_stage.lowest(_table(cfg), cfg.simulate.phonons.n_lowest)["config_id"]
           if (folder / cid / "phonopy.yaml").exists()]
    if not ids:
        raise InputError(f"{folder}: no harmonic phonons; run `simulate.py stage=phonons` first")
    return ids


def nmd(cfg: DictConfig) -> dict:
    relaxed = conf_stage.read_relaxed(_folder(cfg, "configurations"))
    verdicts = {}
    for cid in _phonon_configs(cfg):
        fc = full_force_constants(load_phonons(_folder(cfg, "phonons") / cid / "phonopy.yaml"))
        for t in _temperatures(cfg):
            name = f"{cid}_T{t:g}"
            frames = read_trajectory(trajectory_path(_folder(cfg, "md"), name), cfg.simulate.nmd.discard_fs)
            result = nmd_stage.decompose([frames], relaxed[cid], fc, cfg.simulate.nmd.segments)
            verdicts[name] = nmd_stage.write_results(result, relaxed[cid], t, _folder(cfg, "nmd") / name)
    return verdicts


def gaps(cfg: DictConfig) -> pd.DataFrame:
    model, table = gap_model(cfg), _table(cfg)
    relaxed = conf_stage.read_relaxed(_folder(cfg, "configurations"))
    eg0 = gap_stage.static_gaps(model, {cid: relaxed[cid] for cid in table["config_id"]})
    runs = [(cid, t, read_trajectory(trajectory_path(_folder(cfg, "md"), name), cfg.simulate.gaps.discard_fs))
            for cid, t, name in _md_systems(cfg)]
    thermal, series = gap_stage.thermal_gaps(model, runs)
    per_config, summary = gap_stage.summarise(table, eg0, thermal)
    out = _folder(cfg, "gaps")
    out.mkdir(parents=True, exist_ok=True)
    static = table[["config_id", "x", "multiplicity", "energy_eV", "rank"]].assign(
        gap_0_eV=table["config_id"].map(eg0))
    static.to_csv(out / "gaps_static.csv", index=False)
    per_config.to_csv(out / "gaps_per_config.csv", index=False)
    summary.to_csv(out / "gaps_summary.csv", index=False)
    series.to_csv(out / "gap_series.csv", index=False)
    gap_stage.plot_gaps(summary, out / "eg_x_T.png")
    log.info("Eg(x, T):\n%s", summary[["x", "temperature_K", "lowest_gap_0_eV", "lowest_gap_T_eV",
                                      "lowest_gap_T_err_eV", "lowest_delta_gap_percent",
                                      "boltzmann_delta_gap_percent"]].to_string(index=False))
    return summary


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
    (workdir / "results.json").write_text(json.dumps(results, indent=1))
    print("capml simulate pipeline results:")
    for name in PIPELINE:
        print(f"  {name:15s} {results[name]}")
    print(f"  Eg(x, T) table  {workdir / 'gaps' / 'gaps_summary.csv'}")
    print(f"  Eg(x, T) plot   {workdir / 'gaps' / 'eg_x_T.png'}")
    return workdir

