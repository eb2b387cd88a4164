"""The stages of simulate.py; each takes the composed config and writes into ``cfg.workdir``."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from capml.io.records import run_record
from capml.errors import InputError
from capml.io.contract import check_structure, read_dataset, write_dataset
from capml.io.extxyz import read_structures
from capml.labels.run import make_labeller, parse_shard, run_labels
from capml.simulate import md_check as md_check_stage
from capml.simulate import pipeline as simulate_pipeline
from capml.simulate.run import SimulationRun
from capml.simulate.pipeline import solid_solution
from capml.structures.parents import end_member_phonons
from capml.structures.sampler import sample_structures

log = logging.getLogger("capml.simulate")


def parents(cfg: DictConfig) -> dict:
    labeller = make_labeller(cfg)
    system = solid_solution(cfg)
    written = end_member_phonons(system, labeller.calculator, cfg.parents.out_dir,
                                 cfg.parents.displacement_A)
    return {k: str(v) for k, v in written.items()}


def lattice(cfg: DictConfig) -> dict:
    """End-member lattice constants from the labeller's equation of state (capml.structures.lattice)."""
    from capml.structures.lattice import end_member_lattice_constants

    system = solid_solution(cfg)
    results = end_member_lattice_constants(system, make_labeller(cfg), cfg.lattice.out_dir,
                                           list(cfg.lattice.strains_percent))
    for r in results.values():
        log.info("%s: a = %s Å (start %s), V = %.3f Å³/atom, B = %.1f GPa", r["end_member"],
                 "-" if r["lattice_constant_A"] is None else f"{r['lattice_constant_A']:.4f}",
                 r["start_lattice_constant_A"], r["volume_per_atom_A3"], r["bulk_modulus_GPa"])
    if system.lattice_constants:
        values = ", ".join(f"{s}: {r['lattice_constant_A']:.4f}" for s, r in results.items())
        print(f"system.lattice_constants={{{values}}}")
    return results


def sample(cfg: DictConfig, **overrides) -> Path:
    s = cfg.structures
    kwargs = dict(
        compositions=None if s.compositions is None else list(s.compositions),  # fractions x
        temperatures_K=list(s.temperatures_K),
        phonon_samples=s.phonon_samples,
        uniform_samples=s.uniform_samples,
        equilibrium_samples=s.equilibrium_samples,
        end_member_phonons=(OmegaConf.to_container(cfg.system.end_member_phonons, resolve=True)
                            if cfg.system.get("end_member_phonons") else None),
        rattle_amplitude_A=s.rattle_amplitude_A,
        statistics=s.statistics,
        imaginary_modes=s.imaginary_modes,
        max_enumerate=s.max_enumerate,
        seed=cfg.seed,
    )
    kwargs.update(overrides)
    frames = sample_structures(solid_solution(cfg), **kwargs)
    write_dataset(cfg.sample.out, frames)
    log.info("wrote %d structures to %s", len(frames), cfg.sample.out)
    return Path(cfg.sample.out)


def label(cfg: DictConfig, limit: int | None = None) -> Path:
    structures = read_structures(cfg.label.structures)
    for i, atoms in enumerate(structures):
        check_structure(atoms, f"{cfg.label.structures}: frame {i}")
    summary = run_labels(
        structures,
        cfg.label.out,
        make_labeller(cfg),
        subsets=OmegaConf.to_container(cfg.labels.subsets, resolve=True) if cfg.labels.subsets else None,
        limit=cfg.label.limit if limit is None else limit,
        retry_failed=cfg.label.retry_failed,
        where=str(cfg.label.structures),
        shard=parse_shard(cfg.label.get("shard")),
    )
    log.info("labelled %d, skipped %d, failed %d in %.0f s -> %s", summary.labelled, summary.skipped,
             summary.failed, summary.seconds, cfg.label.out)
    return Path(cfg.label.out)


def data_demo(cfg: DictConfig) -> Path:
    """The data side on the bundled end-member phonons: sample structures, then label a few."""
    sample(cfg, compositions=list(cfg.demo.compositions), temperatures_K=list(cfg.demo.temperatures_K),
           phonon_samples=1, uniform_samples=0, equilibrium_samples=0)
    out = label(cfg, limit=cfg.demo.n_label)
    frames = read_dataset(out, gaps=[make_labeller(cfg).fidelity])
    for atoms in frames:
        log.info("%s  x=%.3f  T=%g K  E=%.4f eV  gap=%.3f eV", atoms.info["structure_id"], atoms.info["x"],
                 atoms.info["temperature"], atoms.info["REF_energy"],
                 atoms.info[f"gap_{make_labeller(cfg).fidelity}"])
    return out


def validate(cfg: DictConfig) -> Path:
    """Check a dataset file against the contract (keys, shapes, finite values, gaps of given fidelities)."""
    frames = read_dataset(cfg.validate.path, require=list(cfg.validate.require), gaps=list(cfg.validate.gaps))
    print(f"{cfg.validate.path}: {len(frames)} frames valid")
    return Path(cfg.validate.path)


def md_check(cfg: DictConfig):
    """Label snapshots of each MD trajectory (resumable) and compare MLIP energies/forces and GNN gaps with them."""
    c = cfg.simulate.md_check
    run = SimulationRun.from_config(cfg)
    out = run.folder("md_check")
    out.mkdir(parents=True, exist_ok=True)
    runs, run_of = [], {}
    for r in run.md_runs():
        runs.append((r.name, run.trajectory(r)))
        run_of[r.name] = (r.config_id, r.temperature_K)
    snapshots = md_check_stage.pick_snapshots(runs, c.snapshots_per_run, c.get("id_prefix") or "")
    configs = run.table()
    x_of = dict(zip(configs["config_id"], configs["x"]))
    for atoms in snapshots:  # dataset metadata: composition and the MD temperature (the split group is the run)
        cid, temperature = run_of[atoms.info["system"]]
        atoms.info.update(x=float(x_of[cid]), temperature=float(temperature))
    structures = out / "structures.extxyz"
    if not (cfg.label.get("shard") and structures.exists()):  # concurrent shards: the first one writes it
        write_dataset(structures, snapshots)
    labeller = make_labeller(cfg)
    dataset = out / "dataset.extxyz"
    # the accurate fidelity on the snapshots too: by default every optional fidelity on every snapshot
    subsets = (OmegaConf.to_container(c.subsets, resolve=True) if c.get("subsets") is not None
               else {name: 1 for name in labeller.optional})
    summary = run_labels(snapshots, dataset, labeller, subsets=subsets, limit=c.limit, where=str(structures),
                         shard=parse_shard(cfg.label.get("shard")))
    if cfg.label.get("shard"):
        log.info("md_check: shard %s labelled %d snapshots; rerun without label.shard to merge and compare",
                 cfg.label.shard, summary.labelled)
        return None
    log.info("md_check: labelled %d, skipped %d, failed %d snapshots", summary.labelled, summary.skipped,
             summary.failed)
    labelled = read_dataset(dataset) if dataset.exists() else []
    if not labelled:
        raise InputError(f"{dataset}: no snapshot labelled (failures in {dataset}.failures.jsonl)")
    gnn = run.gap_model()
    if not any(f"gap_{gnn.fidelity}" in a.info for a in labelled):
        log.warning("md_check: the GNN predicts gap_%s, which no labelled snapshot has (labels give %s); its gap "
                    "is not compared", gnn.fidelity, sorted(k for k in labelled[0].info if k.startswith("gap_")))
    table = md_check_stage.compare(labelled, run.calculator(), gnn)
    table.to_csv(out / md_check_stage.TABLE, index=False)
    md_check_stage.plot(table, out / "md_check.png")
    log.info("MD snapshots against %s (gap: %s):\n%s", labeller.fidelity, gnn.fidelity, table.drop(
        columns=["structure_id", "energy_ref_eV_per_atom", "energy_mlip_eV_per_atom"]).round(3).to_string(index=False))
    return table


def import_vasp(cfg: DictConfig):
    """A folder of VASP runs -> one dataset with its settings and a summary of what was skipped and why."""
    from capml.labels.vasp_import import ImportOptions, import_vasp as run_import, summary_file, summary_table

    c = cfg["import"]
    if c.root is None:
        raise InputError("import.root: expected the folder of VASP runs (import.root=DIR)")
    options = ImportOptions(root=Path(c.root), out=Path(c.out), patterns=tuple(c.patterns), steps=c.steps,
                            stride=c.stride, fidelity=c.fidelity, energy_fidelity=c.energy_fidelity,
                            keep_partial=bool(c.keep_partial), ignore_settings=tuple(c.ignore_settings))
    summary = run_import(options)
    print(summary_table(summary))
    log.info("wrote %d frames to %s (summary %s)", summary.frames, c.out, summary_file(c.out))
    return summary


def active_learning(cfg: DictConfig) -> dict:
    """One active-learning round: MD over the grid, snapshots picked by the gap ensemble's disagreement, labelled
    (see capml.simulate.active_learning)."""
    from capml.simulate.active_learning import run_round

    return run_round(cfg)


STAGES = {"parents": parents, "lattice": lattice, "active_learning": active_learning, "sample": sample, "label": label, "validate": validate, "data_demo": data_demo,
          "md_check": md_check, "import_vasp": import_vasp,
          **simulate_pipeline.PIPELINE, **simulate_pipeline.EXTRA_STAGES, "pipeline": simulate_pipeline.pipeline, "demo": simulate_pipeline.pipeline}


def run_stage(cfg: DictConfig):
    if cfg.stage not in STAGES:
        raise InputError(f"stage='{cfg.stage}': expected one of {sorted(STAGES)}")
    _multirun_workdir(cfg)
    with run_record(cfg, cfg.workdir, cfg.stage):  # <stage>.config.yaml once the stage ends, unless refused
        result = STAGES[cfg.stage](cfg)
    print(f"capml {cfg.stage}: results in {Path(cfg.workdir).resolve()}")
    return result


def _multirun_workdir(cfg: DictConfig) -> None:
    """In a sweep (-m) every job writes into its own Hydra job folder, so parallel jobs never share files."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        cfg.workdir = HydraConfig.get().runtime.output_dir
