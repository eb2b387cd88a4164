"""One simulate invocation: the folder layout and the state every stage shares, built once.

``SimulationRun(workdir, system, x, temperatures_K, ...)`` knows where each stage writes (``run.folder("md")``),
names every trajectory in one place (:meth:`SimulationRun.md_runs`, :meth:`SimulationRun.point`), and reads what
earlier stages wrote once per invocation: the ranked configurations table, the relaxed structures, harmonic
force constants, the MLIP and the gap models are cached on first use (``run.relaxed()``, ``run.force_constants(cid)``,
``run.calculator()``, ``run.gap_model()``). Stage functions (``capml.simulate.pipeline``) take a run and their typed
settings, so they run without Hydra::

    run = SimulationRun("runs/x", SolidSolution.from_config(...), x=[0, 0.5, 1], temperatures_K=[300],
                        mlip_model="models/mace_finetuned.model", gnn_checkpoint="models/gnn_gap_hse06")
    configurations(run, ConfigurationSettings()); md(run, MDSettings(n_steps=500))

:meth:`SimulationRun.from_config` builds one from the composed simulate config (``conf/simulate.yaml``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from ase import Atoms
from omegaconf import DictConfig, OmegaConf

from capml.errors import InputError
from capml.structures.system import SolidSolution, compositions_from_x


@dataclass(frozen=True)
class MDRun:
    """One MD trajectory: a configuration at a set-point temperature, replica ``replica`` of its point."""

    config_id: str
    temperature_K: float
    replica: int
    name: str  # the trajectory's file stem, ``<config>_T<T>`` or ``<config>_T<T>_r<k>``

    @property
    def point(self) -> tuple[str, float]:
        return self.config_id, self.temperature_K

    @classmethod
    def from_name(cls, name: str) -> "MDRun":
        """The run a trajectory's file stem names (``<config>_T<T>`` or ``<config>_T<T>_r<k>``)."""
        match = re.fullmatch(r"(?P<config>.+)_T(?P<temperature>[0-9.]+)(?:_r(?P<replica>[0-9]+))?", name)
        if match is None:
            raise InputError(f"{name}: not an MD trajectory name; expected <config>_T<temperature>[_r<replica>]")
        return cls(match["config"], float(match["temperature"]), int(match["replica"] or 0), name)


@dataclass
class SimulationRun:
    """The folders and shared state of one simulate invocation (see the module docstring)."""

    workdir: Path
    system: SolidSolution
    x: object = (0.0, 0.5, 1.0)          # fractions of system.species[0]: a number, a list or "all"
    temperatures_K: Sequence[float] = (300.0,)
    mlip_model: str | None = None
    gnn_checkpoint: str | None = None
    gnn_checkpoint_beside: str | None = None
    device: str = "cpu"
    dtype: str = "float64"              # relaxations and phonons; MD has its own (MDSettings / md_dtype)
    md_dtype: str = "float32"
    gap_dtype: str = "float64"          # the gap models' MACE descriptors (float32: 2.8x faster on a CPU)
    md_configurations_per_composition: int | None = 1
    md_replicas: int = 1
    phonons_n_lowest: int | None = 1
    neighbour_list: str = "batched"
    skin_A: float = 1.0
    cueq: str = "auto"                  # MACE on cuequivariance kernels (batched MD and relaxations): auto | true | false
    seed: int = 0
    layout: dict = field(default_factory=dict)  # stage -> folder relative to workdir, where not <stage>
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.workdir = Path(self.workdir)
        t = self.temperatures_K
        values = [float(t)] if isinstance(t, (int, float)) else [float(v) for v in t]
        if any(v <= 0 for v in values):
            raise InputError(f"simulate.temperature={values}: expected temperatures in K above 0")
        self.temperatures_K = values
        from capml.simulate.mlip import CUEQ, DTYPES

        if self.gap_dtype not in DTYPES:
            raise InputError(f"simulate.gap_dtype={self.gap_dtype!r}: expected 'float64' or 'float32'")

        if str(self.cueq).lower() not in CUEQ:
            raise InputError(f"simulate.cueq={self.cueq!r}: expected one of {list(CUEQ)}")
        if int(self.md_replicas) < 1:
            raise InputError(f"simulate.md.replicas={self.md_replicas}: expected an integer >= 1")
        self.compositions = compositions_from_x(self.x, self.system.n_sites)  # occupied-site counts

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "SimulationRun":
        s = cfg.simulate
        x = OmegaConf.to_container(s.x) if OmegaConf.is_list(s.x) else s.x
        t = OmegaConf.to_container(s.temperature) if OmegaConf.is_list(s.temperature) else s.temperature
        return cls(workdir=Path(cfg.workdir), system=SolidSolution.from_config(cfg.system), x=x, temperatures_K=t,
                   mlip_model=s.mlip_model, gnn_checkpoint=s.gnn_checkpoint,
                   gnn_checkpoint_beside=s.get("gnn_checkpoint_beside"), device=s.device, dtype=s.dtype,
                   md_dtype=s.md.dtype, gap_dtype=s.get("gap_dtype", "float64"), md_configurations_per_composition=s.md.configurations_per_composition,
                   md_replicas=int(s.md.get("replicas") or 1), phonons_n_lowest=s.phonons.n_lowest,
                   neighbour_list=s.md.get("neighbour_list", "batched"), skin_A=float(s.md.get("skin_A", 1.0)),
                   cueq=str(s.get("cueq", "auto")).lower(), seed=int(cfg.seed))

    # -- layout ------------------------------------------------------------------------------------------------
    def folder(self, stage: str) -> Path:
        """Where ``stage`` writes: ``<workdir>/<stage>`` unless ``layout`` moves it."""
        return self.workdir / self.layout.get(stage, stage)

    def moved(self, **folders: str) -> "SimulationRun":
        """The same run with some stages' folders moved (``md="expansion/npt/md"``); what the other stages
        wrote is shared, cached state is not."""
        from dataclasses import replace

        return replace(self, layout={**self.layout, **folders}, _cache={})

    @staticmethod
    def point(config_id: str, temperature_K: float) -> str:
        """The name of one (configuration, temperature) point: nmd and modes folders, the replicas' common stem."""
        return f"{config_id}_T{temperature_K:g}"

    # -- what earlier stages wrote, read once --------------------------------------------------------------------
    def _cached(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def forget(self, *keys: str) -> None:
        """Drop cached state (a stage that rewrites it calls this); no keys: everything."""
        for key in keys or list(self._cache):
            self._cache.pop(key, None)

    def table(self) -> pd.DataFrame:
        """The ranked configurations of this run's compositions (``configurations/energies.csv``)."""
        from capml.simulate.configurations import TABLE

        def read():
            path = self.folder("configurations") / TABLE
            if not path.exists():
                raise InputError(f"{path}: not found; run `simulate.py stage=configurations` first")
            table = pd.read_csv(path)
            return table[table["n_occupied"].isin(self.compositions)]
        return self._cached("table", read)

    def relaxed(self) -> dict[str, Atoms]:
        """The relaxed structures by ``config_id``."""
        from capml.simulate.configurations import read_relaxed

        return self._cached("relaxed", lambda: read_relaxed(self.folder("configurations")))

    def lowest(self, n_per_composition: int | None) -> pd.DataFrame:
        """The ``n_per_composition`` lowest configurations of each composition (None: all)."""
        from capml.simulate.configurations import lowest

        return lowest(self.table(), n_per_composition)

    def md_runs(self) -> list[MDRun]:
        """Every MD trajectory: the lowest ``md_configurations_per_composition`` configurations x temperatures x
        replicas (their own Maxwell-Boltzmann start and noise: one batch, one random stream)."""
        chosen = self.lowest(self.md_configurations_per_composition)["config_id"]
        replicas = int(self.md_replicas)
        return [MDRun(cid, t, k, self.point(cid, t) + ("" if replicas == 1 else f"_r{k}"))
                for t in self.temperatures_K for cid in chosen for k in range(replicas)]

    def runs_by_point(self) -> dict[tuple[str, float], list[MDRun]]:
        """The MD runs grouped by (configuration, temperature): the replicas of each point."""
        out: dict[tuple[str, float], list[MDRun]] = {}
        for r in self.md_runs():
            out.setdefault(r.point, []).append(r)
        return out

    def trajectory(self, run: MDRun | str, discard_fs: float = 0.0, folder: Path | None = None) -> list[Atoms]:
        """The frames of one MD run (by default from ``<workdir>/md``) after ``discard_fs``."""
        from capml.simulate.md import read_trajectory, trajectory_path

        name = run.name if isinstance(run, MDRun) else str(run)
        return read_trajectory(trajectory_path(folder or self.folder("md"), name), discard_fs)

    def phonon_configs(self) -> list[str]:
        """The lowest configurations (``phonons_n_lowest`` per composition) whose harmonic phonons exist."""
        folder = self.folder("phonons")
        ids = [cid for cid in self.lowest(self.phonons_n_lowest)["config_id"]
               if (folder / cid / "phonopy.yaml").exists()]
        if not ids:
            raise InputError(f"{folder}: no harmonic phonons; run `simulate.py stage=phonons` first")
        return ids

    def harmonic(self, config_id: str):
        """The harmonic phonons (phonopy) of one configuration."""
        from capml.phonons import load_phonons

        return self._cached(("harmonic", config_id),
                            lambda: load_phonons(self.folder("phonons") / config_id / "phonopy.yaml"))

    def force_constants(self, config_id: str) -> np.ndarray:
        """Full harmonic force constants (eV/Å²) of one configuration."""
        from capml.phonons import full_force_constants

        return self._cached(("fc", config_id), lambda: full_force_constants(self.harmonic(config_id)))

    # -- models ------------------------------------------------------------------------------------------------
    def calculator(self):
        """The MLIP as an ASE calculator (relaxations, phonons), checked to know the system's elements."""
        from capml.simulate.mlip import ase_calculator, check_elements

        def make():
            calc = ase_calculator(self.mlip_model, self.dtype, self.device)
            check_elements(calc.models[0], self.system.elements, f"simulate.mlip_model={self.mlip_model}")
            return calc
        return self._cached("calculator", make)

    def md_model(self, compute_stress: bool = False):
        """The MLIP as a batched torch-sim model (MD)."""
        from capml.simulate.mlip import batched_model

        return self._cached(("md_model", compute_stress), lambda: batched_model(
            self.mlip_model, self.md_dtype, self.device, compute_stress=compute_stress,
            neighbour_list=self.neighbour_list, skin_A=self.skin_A, cueq=self.cueq))

    def relax_model(self):
        """The MLIP as a batched torch-sim model with stress, in the relaxations' dtype (batched relaxations)."""
        from capml.simulate.mlip import batched_model, check_elements

        def make():
            model = batched_model(self.mlip_model, self.dtype, self.device, compute_stress=True,
                                  neighbour_list=self.neighbour_list, skin_A=self.skin_A, cueq=self.cueq)
            check_elements(model.model, self.system.elements, f"simulate.mlip_model={self.mlip_model}")
            return model
        return self._cached("relax_model", make)

    def gap_model(self, key: str = "gnn_checkpoint"):
        """The gap model at ``simulate.<key>``: a checkpoint file or a folder of them (an ensemble)."""
        return self._cached(("gap", key), lambda: load_gap_model(getattr(self, key), f"simulate.{key}",
                                                                 self.gap_dtype))

    def flag_threshold_eV(self, flag_std_eV: float | None = None) -> float:
        """Ensemble spread above which a prediction counts as outside the training data: ``flag_std_eV`` when
        given, else what the ensemble folder's ensemble.json records from its calibration (nan: none)."""
        if flag_std_eV is not None:
            return float(flag_std_eV)
        card = Path(str(self.gnn_checkpoint)) / "ensemble.json"
        return float(json.loads(card.read_text()).get("flag_std_eV", "nan")) if card.is_file() else float("nan")


def load_gap_model(path: str | Path | None, where: str, descriptor_dtype: str = "float64"):
    """A band-gap GapPredictor from a checkpoint or an ensemble folder; ``where`` names the setting in errors;
    ``descriptor_dtype`` is the precision of the MACE descriptors of models that use them."""
    if path is None:
        key = where.rsplit(".", 1)[-1]
        raise InputError(f"{where}: not set (the system names no gap model: set system.{key} or "
                         f"{where} to a checkpoint or a folder of them)")
    path = Path(path)
    if not path.exists():
        raise InputError(f"{where}={path}: GNN checkpoint not found (train one with train.py "
                         "or point it at a .ckpt file or a folder of them, an ensemble)")
    from capml.models.predict import GapPredictor

    model = GapPredictor.from_checkpoint(str(path), descriptor_dtype=descriptor_dtype)
    if not str(model.target).startswith("gap_"):
        raise InputError(f"{where}={path}: a model of target '{model.target}', expected a band-gap model "
                         "(target gap_<fidelity>)")
    return model
