"""Band gaps (or any trained target) of ASE structures from a checkpoint, in batches.

    GapPredictor.from_checkpoint("best.ckpt").predict(list_of_atoms)  # -> np.ndarray, eV

Graphs are built per structure with the vectorised neighbour list and concatenated into one batch
graph in numpy; the network runs once per batch. ``predict_file`` streams an extxyz file so memory
stays bounded by the batch size, not the number of snapshots.
"""

from __future__ import annotations

import pickle
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from ase import Atoms

from capml.errors import InputError
from capml.graphs.build import batch_graphs
from capml.models.module import GraphRegressor


class GapPredictor:
    def __init__(self, module: GraphRegressor, batch_size: int = 256, device: str = "cpu", workers: int | None = None):
        self.module = module.to(device).eval()
        self.batch_size = int(batch_size)
        # threads building neighbour lists; default: one per core torch uses
        self.workers = int(workers or torch.get_num_threads())
        self.device = device
        self.cutoff_A = float(module.hparams.cutoff_A)
        self.target = module.hparams.target

    @classmethod
    def from_checkpoint(cls, path: str | Path, batch_size: int = 256, device: str = "cpu",
                        workers: int | None = None) -> "GapPredictor":
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: checkpoint not found")
        try:
            module = GraphRegressor.load_from_checkpoint(path, map_location=device)
        except (KeyError, RuntimeError, TypeError, ValueError, EOFError, pickle.UnpicklingError) as err:
            raise InputError(f"{path}: not a capml GNN checkpoint ({type(err).__name__}: {err})") from err
        return cls(module, batch_size=batch_size, device=device, workers=workers)

    @torch.inference_mode()
    def predict_batch(self, structures: Sequence[Atoms], where: str = "<atoms>") -> np.ndarray:
        graph = batch_graphs(structures, self.cutoff_A, where, workers=self.workers).to(self.device)
        return self.module.predict_physical(graph).double().cpu().numpy()

    def predict(self, structures: Iterable[Atoms], where: str = "<atoms>") -> np.ndarray:
        """Predictions for ``structures`` in the target's units (eV for gaps), in input order."""
        return np.concatenate(list(self.iter_predict(structures, where)) or [np.empty(0)])

    def iter_predict(self, structures: Iterable[Atoms], where: str = "<atoms>") -> Iterator[np.ndarray]:
        """One array per batch; ``structures`` may be a lazy iterator (only one batch is held at a time)."""
        iterator = iter(structures)
        start = 0
        while batch := list(islice(iterator, self.batch_size)):
            yield self.predict_batch(batch, where=f"{where} (structures {start}..{start + len(batch) - 1})")
            start += len(batch)

    def predict_file(self, path: str | Path) -> Iterator[np.ndarray]:
        """Stream an ASE-readable file (e.g. an MD trajectory in extxyz) batch by batch."""
        import ase.io

        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: structure file not found")
        return self.iter_predict(ase.io.iread(path, index=":"), where=str(path))
