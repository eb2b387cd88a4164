"""Node inputs from a MACE potential: the per-atom invariant descriptors of a fitted MLIP.

The fine-tuned MACE has learned the local geometry from many thousands of PBEsol forces; its invariant node
features (the scalar channels of every interaction layer, as ``MACECalculator.get_descriptors`` returns them)
then give the gap model a description of each atom's environment that a few hundred gap labels could not teach
it. Structures are featurised in batches: one model call per batch of cells, not one per cell.

The model is named relative to the capml checkout when it lies inside it (``capml_root:models/...``), so a
checkpoint that records it works from any clone.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from ase import Atoms

from capml.errors import InputError
from capml.io.paths import portable_path as portable, resolve_path as resolve  # noqa: F401 (re-exported)
from capml.mlip.calculator import DTYPES


class MACEDescriptors:
    """Invariant per-atom descriptors of the MACE model in ``model`` (CPU or CUDA). ``dtype`` is the precision of
    the model call: float64 (what the gap models were trained on) or float32 (2.8x faster on one CPU core, descriptors
    within 6e-6 of float64 relative to their largest value; ``tests/graphs/test_descriptors.py``)."""

    def __init__(self, model: str | Path, device: str = "cpu", batch_size: int = 64, dtype: str = "float64"):
        from mace.calculators import MACECalculator

        self.name = portable(model)
        path = resolve(self.name)
        if not path.is_file():
            raise InputError(f"{path}: MACE model for the descriptors not found (data.descriptors)")
        if dtype not in DTYPES:
            raise InputError(f"descriptor dtype {dtype!r}: expected one of {list(DTYPES)}")
        self.dtype = dtype
        try:
            self.calc = MACECalculator(model_paths=str(path), device=device, default_dtype=dtype)
        except Exception as err:  # noqa: BLE001 -- torch.load raises many types for a file that is not a model
            from capml.io.torchfile import error_reason

            raise InputError(f"{path}: cannot load as a MACE model ({error_reason(err)})") from err
        self.model = self.calc.models[0].eval()
        self.device = device
        self.batch_size = int(batch_size)
        with open(path, "rb") as handle:
            self.digest = hashlib.sha256(handle.read()).hexdigest()[:16]
        from e3nn import o3

        irreps = o3.Irreps(str(self.model.products[0].linear.irreps_out))
        self.l_max = irreps.lmax
        self.n_invariant = irreps.dim // (self.l_max + 1) ** 2
        self.n_layers = int(self.model.num_interactions)
        self.width = self.n_invariant * self.n_layers
        # descriptors of recently seen structures (a gap model and the model beside it, or an ensemble's base and
        # correction, featurise the same MD frames): keyed by numbers, positions and cell
        self.memory: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.memory_size = 8192

    def __call__(self, structures: Sequence[Atoms]) -> list[np.ndarray]:
        """(n_atoms, width) descriptors of each structure."""
        keys = [a.numbers.tobytes() + a.positions.tobytes() + np.asarray(a.cell).tobytes() + a.pbc.tobytes()
                for a in structures]
        out = [self.memory.get(key) for key in keys]
        missing = [k for k, values in enumerate(out) if values is None]
        for k, values in zip(missing, self._compute([structures[k] for k in missing]) if missing else []):
            out[k] = self.memory[keys[k]] = values
            if len(self.memory) > self.memory_size:
                self.memory.popitem(last=False)
        return out

    def _compute(self, structures: Sequence[Atoms]) -> list[np.ndarray]:
        from mace import data as mace_data
        from mace.modules.utils import extract_invariant
        from mace.tools import torch_geometric, torch_tools

        calc = self.calc
        keyspec = mace_data.KeySpecification(info_keys={}, arrays_keys={})
        out: list[np.ndarray] = []
        for start in range(0, len(structures), self.batch_size):
            chunk = structures[start:start + self.batch_size]
            with torch_tools.default_dtype(self.dtype):
                graphs = [mace_data.AtomicData.from_config(
                    mace_data.config_from_atoms(Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc),
                                                key_specification=keyspec, head_name=calc.head),
                    z_table=calc.z_table, cutoff=calc.r_max, heads=calc.available_heads) for a in chunk]
            batch = torch_geometric.Batch.from_data_list(graphs).to(self.device)
            with torch.no_grad():
                node_feats = self.model(batch.to_dict(), training=False, compute_force=False)["node_feats"]
            invariant = extract_invariant(node_feats, self.n_layers, self.n_invariant, self.l_max)
            values = invariant.detach().cpu().double().numpy()
            bounds = np.cumsum([0] + [len(a) for a in chunk])
            out += [values[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        return out


def descriptors_for(name: str, device: str = "cpu", dtype: str = "float64") -> MACEDescriptors:
    """One loaded featuriser per model, device and precision (graph building calls this for every batch)."""
    return _featuriser(str(name), str(device), str(dtype))


descriptors_for.cache_clear = lambda: _featuriser.cache_clear()  # forget loaded models (a file changed in place)


@lru_cache(maxsize=4)
def _featuriser(name: str, device: str, dtype: str) -> MACEDescriptors:
    return MACEDescriptors(name, device, dtype=dtype)
