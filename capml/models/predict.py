"""Band gaps (or any trained target) of ASE structures from a checkpoint or an ensemble of them, in batches.

    GapPredictor.from_checkpoint("best.ckpt").predict(list_of_atoms)           # -> np.ndarray, eV
    model = GapPredictor.from_checkpoint("models/gnn_gap_hse06")               # a folder: every *.ckpt, an ensemble
    mean_eV, std_eV = model.predict(list_of_atoms, return_std=True)          # ensemble mean and spread

An ensemble's members share the graphs of a batch (built once); the spread is the standard deviation over
members (ddof=1), NaN for a single model.

Graphs are built per structure with the vectorised neighbour list and concatenated into one batch
graph in numpy; the network runs once per batch. ``predict_file`` streams an extxyz file so memory
stays bounded by the batch size, not the number of snapshots.
"""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from ase import Atoms

from capml.errors import InputError
from capml.data.graph_dataset import MINUS
from capml.graphs.build import batch_graphs
from capml.io.contract import check_structure
from capml.io.extxyz import check_structure_file, iter_structures
from capml.io.torchfile import error_reason, load_torch_file
from capml.models.module import GraphRegressor


def checkpoint_files(path: str | Path | Sequence[str | Path]) -> list[Path]:
    """A checkpoint file, a folder of them (every ``*.ckpt``, sorted: an ensemble) or a list of files."""
    if not isinstance(path, (str, Path)):
        return [Path(p) for p in path]
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.ckpt"))
        if not files:
            raise InputError(f"{path}: no *.ckpt files in this folder (expected a GNN checkpoint or an ensemble)")
        return files
    return [path]


def load_module(path: Path, device: str = "cpu") -> GraphRegressor:
    """The GraphRegressor of a checkpoint written by train.py; InputError naming the file for anything else."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    what, expected = "a capml GNN checkpoint", "a .ckpt file written by train.py"
    saved = load_torch_file(path, what, expected=expected)
    if not isinstance(saved, dict) or not {"state_dict", GraphRegressor.CHECKPOINT_HYPER_PARAMS_KEY} <= set(saved):
        keys = f" with keys {sorted(map(str, saved))[:6]}" if isinstance(saved, dict) else ""
        raise InputError(f"{path}: not {what} (it holds a {type(saved).__name__}{keys}); expected {expected}, "
                         "with state_dict and hyper_parameters")
    try:
        return GraphRegressor.load_from_checkpoint(path, map_location=device)
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 -- a checkpoint of another model: any error rebuilding it
        raise InputError(f"{path}: not {what} (cannot rebuild the model: {error_reason(err)}); expected "
                         f"{expected}") from err


class GapPredictor:
    """One model or an ensemble (``modules``: one GraphRegressor or several with the same target and cutoff)."""

    def __init__(self, modules: GraphRegressor | Sequence[GraphRegressor], batch_size: int = 256,
                 device: str = "cpu", workers: int | None = None, where: str = "<modules>",
                 base: "GapPredictor | None" = None, descriptor_dtype: str = "float64"):
        modules = [modules] if isinstance(modules, GraphRegressor) else list(modules)
        if not modules:
            raise InputError(f"{where}: no model")
        for k, module in enumerate(modules[1:], 1):
            for key in ("target", "cutoff_A", "descriptors"):
                if module.hparams.get(key) != modules[0].hparams.get(key):
                    raise InputError(f"{where}: ensemble member {k} has {key}={module.hparams.get(key)}, member 0 "
                                     f"has {modules[0].hparams.get(key)}; members must agree")
        self.modules = [module.to(device).eval() for module in modules]
        self.module = self.modules[0]
        self.batch_size = int(batch_size)
        # threads building neighbour lists; default: one per core torch uses
        self.workers = int(workers or torch.get_num_threads())
        self.device = device
        self.cutoff_A = float(self.module.hparams.cutoff_A)
        self.target = self.module.hparams.target
        self.descriptors = self.module.hparams.get("descriptors")
        # precision of the MACE descriptors at inference (float32: 2.8x faster on a CPU, gaps within 1e-4 eV)
        self.descriptor_dtype = descriptor_dtype
        recorded = self.module.hparams.get("descriptors_digest")
        if self.descriptors and recorded:
            from capml.graphs.descriptors import descriptors_for, resolve

            if descriptors_for(self.descriptors, dtype=descriptor_dtype).digest != recorded:
                raise InputError(f"{where}: trained on the descriptors of the MACE model {resolve(self.descriptors)} "
                                 "as it was, and that file has changed since (a refitted MLIP?); retrain the gap model "
                                 "with the new descriptors")
        # a correction model: the modules learned target - base target (e.g. gap_hse06_minus_gap_pbesol), and the
        # predictions are the base ensemble's plus theirs, member by member
        self.base = base
        # from a cross-validated calibration (ensemble.json "std_scale"): member deviations from the mean are
        # stretched by it, so every spread computed from the members is the calibrated one
        self.std_scale = 1.0
        if base is not None:
            first, _, second = str(self.target).partition(MINUS)
            if second != base.target or base.members != self.members:
                raise InputError(f"{where}: a correction model of target {self.target} ({self.members} members) "
                                 f"cannot correct a base model of {base.target} ({base.members} members)")
            self.target = first

    @property
    def members(self) -> int:
        return len(self.modules)

    @property
    def fidelity(self) -> str:
        """The fidelity of a gap model ("hse06" for target gap_hse06)."""
        return str(self.target).removeprefix("gap_")

    @classmethod
    def from_checkpoint(cls, path: str | Path | Sequence[str | Path], batch_size: int = 256, device: str = "cpu",
                        workers: int | None = None, descriptor_dtype: str = "float64") -> "GapPredictor":
        """A checkpoint file, a folder of checkpoints (an ensemble) or a list of checkpoint files; ``descriptor_dtype``:
        the precision of MACE descriptors for models that use them."""
        files = checkpoint_files(path)
        base = None
        card = Path(path) / "ensemble.json" if isinstance(path, (str, Path)) and Path(path).is_dir() else None
        record = json.loads(card.read_text()) if card is not None and card.is_file() else {}
        if record.get("correction_to"):
            base = cls.from_checkpoint(Path(path) / record["correction_to"], batch_size, device, workers,
                                       descriptor_dtype)
            base.std_scale = 1.0  # the calibration is that of the sum
        model = cls([load_module(f, device) for f in files], batch_size=batch_size, device=device, workers=workers,
                    where=str(path), base=base, descriptor_dtype=descriptor_dtype)
        model.std_scale = float(record.get("calibration", {}).get("std_scale", 1.0))
        return model

    @torch.inference_mode()
    def predict_members_batch(self, structures: Sequence[Atoms], where: str = "<atoms>") -> np.ndarray:
        """(members, structures): every member on one batch graph (shared with the base model of a correction
        when the cutoffs agree)."""
        for k, atoms in enumerate(structures):  # crystals only, as every stage of the CLI takes them
            check_structure(atoms, f"{where}: structure {k}")
        graph = batch_graphs(structures, self.cutoff_A, where, workers=self.workers,
                             descriptors=self.descriptors, descriptor_dtype=self.descriptor_dtype).to(self.device)
        members = np.stack([m.predict_physical(graph).double().cpu().numpy() for m in self.modules])
        if self.base is None:
            return members
        shared = (self.base.cutoff_A, self.base.descriptors, self.base.descriptor_dtype)
        if shared == (self.cutoff_A, self.descriptors, self.descriptor_dtype) and self.base.base is None:
            return members + np.stack([m.predict_physical(graph).double().cpu().numpy() for m in self.base.modules])
        return members + self.base.predict_members_batch(structures, where)

    def predict_batch(self, structures: Sequence[Atoms], where: str = "<atoms>") -> np.ndarray:
        return self.predict_members_batch(structures, where).mean(axis=0)

    def predict_members(self, structures: Iterable[Atoms], where: str = "<atoms>") -> np.ndarray:
        """Every member's predictions, shape (members, structures), with deviations from the ensemble mean
        stretched by the calibrated ``std_scale`` (1 when uncalibrated)."""
        parts = list(self.iter_predict_members(structures, where))
        members = np.concatenate(parts, axis=1) if parts else np.empty((self.members, 0))
        if self.std_scale == 1.0:
            return members
        mean = members.mean(axis=0)
        return mean + self.std_scale * (members - mean)

    def predict(self, structures: Iterable[Atoms], where: str = "<atoms>",
                return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Predictions for ``structures`` in the target's units (eV for gaps), in input order: the ensemble mean,
        and with ``return_std`` also the spread over members (NaN for one model)."""
        members = self.predict_members(structures, where)
        mean = members.mean(axis=0)
        if not return_std:
            return mean
        return mean, ensemble_std(members)

    def iter_predict_members(self, structures: Iterable[Atoms], where: str = "<atoms>") -> Iterator[np.ndarray]:
        iterator = iter(structures)
        start = 0
        while batch := list(islice(iterator, self.batch_size)):
            yield self.predict_members_batch(batch, where=f"{where} (structures {start}..{start + len(batch) - 1})")
            start += len(batch)

    def iter_predict(self, structures: Iterable[Atoms], where: str = "<atoms>") -> Iterator[np.ndarray]:
        """One array of ensemble means per batch; ``structures`` may be a lazy iterator (one batch held at a time)."""
        for members in self.iter_predict_members(structures, where):
            yield members.mean(axis=0)

    def predict_file(self, path: str | Path) -> Iterator[np.ndarray]:
        """Stream an ASE-readable file (e.g. an MD trajectory in extxyz) batch by batch; a missing, empty, truncated or
        binary file is an InputError naming it."""
        path = check_structure_file(path)
        return self.iter_predict(iter_structures(path), where=str(path))


def ensemble_std(members: np.ndarray) -> np.ndarray:
    """Standard deviation over ensemble members (axis 0, ddof=1); NaN with a single member."""
    members = np.asarray(members, float)
    if members.shape[0] < 2:
        return np.full(members.shape[1:], np.nan)
    return members.std(axis=0, ddof=1)
