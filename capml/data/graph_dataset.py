"""Crystal graphs of a capml dataset file, built once and cached on disk.

The cache is keyed by the file's content hash, the cutoff and the feature set, so a grown dataset or a
new cutoff rebuilds it; the cache folder defaults to ``<dataset>.graphs/`` next to the file.

Targets (one value per frame, NaN where the frame lacks the label):
    gap_<fidelity>      eV, every gap key present in the file
    gap_<a>_minus_gap_<b>  eV, the difference of two fidelities (e.g. the HSE06 correction to PBEsol)
    energy_per_atom     eV/atom, REF_energy / n_atoms
    hydrostatic_stress  eV/Å^3, trace(REF_stress) / 3 (ASE sign: negative under compression)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from ase import Atoms
from torch_geometric.data import InMemoryDataset
from tqdm.auto import tqdm

from capml.errors import InputError
from capml.graphs.build import DEFAULT_CUTOFF_A, atoms_to_graph
from capml.graphs.features import NODE_FEATURES
from capml.io.atomic import atomic_path
from capml.io.contract import ENERGY_KEY, GAP_PREFIX, METADATA_KEYS, STRESS_KEY, gap_keys, read_dataset
from capml.io.jsonio import write_json

log = logging.getLogger(__name__)

DERIVED_TARGETS = ("energy_per_atom", "hydrostatic_stress")
CACHE_VERSION = 2  # 2: fidelity differences as targets


MINUS = "_minus_"


def target_values(frames: Sequence[Atoms], name: str) -> np.ndarray:
    """Per-frame values of target ``name`` (NaN where missing)."""
    if MINUS in name:
        first, second = name.split(MINUS, 1)
        return target_values(frames, first) - target_values(frames, second)
    if name.startswith(GAP_PREFIX):
        return np.array([float(a.info.get(name, np.nan)) for a in frames])
    if name == "energy_per_atom":
        return np.array([float(a.info.get(ENERGY_KEY, np.nan)) / len(a) for a in frames])
    if name == "hydrostatic_stress":
        return np.array(
            [np.trace(np.asarray(a.info[STRESS_KEY], float).reshape(3, 3)) / 3 if STRESS_KEY in a.info else np.nan
             for a in frames]
        )
    raise InputError(f"target '{name}': expected gap_<fidelity>, {' or '.join(DERIVED_TARGETS)}")


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


class CrystalGraphDataset(InMemoryDataset):
    """Graphs of every frame in ``path`` with all available targets as per-graph attributes."""

    def __init__(self, path: str | Path, cutoff_A: float = DEFAULT_CUTOFF_A, cache_dir: str | Path | None = None,
                 descriptors: str | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: dataset file not found (expected a capml extxyz dataset)")
        self.cutoff_A = float(cutoff_A)
        self.descriptors = descriptors or None
        features = ",".join(NODE_FEATURES)
        if self.descriptors:
            from capml.graphs.descriptors import descriptors_for

            features += f",mace:{descriptors_for(self.descriptors).digest}"
        key = hashlib.sha256(
            f"{file_digest(self.path)}|{self.cutoff_A}|{features}|{CACHE_VERSION}".encode()
        ).hexdigest()[:16]
        root = Path(cache_dir) if cache_dir else self.path.with_name(self.path.name + ".graphs")
        super().__init__(root=str(root / key), log=False)
        try:
            self.load(self.processed_paths[0])
            self.meta = json.loads(Path(self.processed_paths[1]).read_text())
        except Exception as err:  # a cache torn by a kill (half a file): built again
            log.warning("%s: graph cache unreadable (%s); rebuilding it", self.processed_dir, type(err).__name__)
            shutil.rmtree(self.processed_dir, ignore_errors=True)
            super().__init__(root=str(root / key), log=False)
            self.load(self.processed_paths[0])
            self.meta = json.loads(Path(self.processed_paths[1]).read_text())

    @property
    def raw_file_names(self) -> list[str]:
        return []

    @property
    def processed_file_names(self) -> list[str]:
        return ["graphs.pt", "meta.json"]

    def process(self) -> None:
        frames = read_dataset(self.path, require=())
        gaps = gap_keys(frames)
        targets = gaps + [f"{a}{MINUS}{b}" for a in gaps for b in gaps if a != b]
        targets += [name for name, key in zip(DERIVED_TARGETS, (ENERGY_KEY, STRESS_KEY))
                    if any(key in a.info for a in frames)]
        values = {name: target_values(frames, name) for name in targets}
        extra = None
        if self.descriptors:
            from capml.graphs.descriptors import descriptors_for

            extra = descriptors_for(self.descriptors)(frames)
        graphs = []
        for k, atoms in enumerate(tqdm(frames, desc=f"graphs of {self.path.name}", leave=False, disable=None)):
            graph = atoms_to_graph(atoms, self.cutoff_A, where=f"{self.path}: frame {k}")
            if extra is not None:
                graph.x = torch.cat([graph.x, torch.as_tensor(extra[k], dtype=torch.float32)], dim=1)
            for name in targets:
                graph[name] = torch.tensor([values[name][k]], dtype=torch.float32)
            graphs.append(graph)
        final = Path(self.processed_paths[0])  # written whole under a name of its own, then moved in place, so that
        with atomic_path(final) as tmp:  # parallel jobs building one cache never tear it
            self.save(graphs, str(tmp))
        info = [{key: a.info[key] for key in METADATA_KEYS if key in a.info} for a in frames]
        meta = {"source": str(self.path.resolve()), "cutoff_A": self.cutoff_A, "targets": targets,
                "info": info}
        write_json(Path(self.processed_paths[1]), meta)
        log.info("built %d graphs of %s into %s", len(graphs), self.path, self.processed_dir)

    @property
    def targets(self) -> list[str]:
        return list(self.meta["targets"])

    def target(self, name: str) -> np.ndarray:
        if name not in self.meta["targets"]:
            raise InputError(f"{self.path}: target '{name}' not in the dataset (available: {self.meta['targets']})")
        return self._data[name].numpy().astype(float)
