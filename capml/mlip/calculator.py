"""Loading a MACE model file, in one place: the dtype and device check, the torch module the file holds, the
elements it knows, and mace-torch's ASE calculator around it. The batched torch-sim model that MD uses
(:func:`capml.simulate.mlip.batched_model`) loads its module here too, so every stage runs the same weights.

float64 for phonons and relaxations (finite differences of 0.01 Å need the precision), float32 for MD (1.9x
faster for the bundled base model on a 40-atom cell on one CPU core, 41 vs 77 ms per force call; MD averages are
insensitive to the rounding).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Literal

import torch
from ase.calculators.calculator import Calculator

from capml.errors import InputError

DTYPES = {"float64": torch.float64, "float32": torch.float32}
DEVICES = ("cpu", "cuda")


def check_dtype_device(dtype: str, device: str, prefix: str = "") -> None:
    """InputError unless ``dtype`` is one of DTYPES and ``device`` one of DEVICES that torch can use here;
    ``prefix`` names the config group the values came from in the message (e.g. "simulate.")."""
    if dtype not in DTYPES:
        raise InputError(f"{prefix}dtype='{dtype}': expected one of {list(DTYPES)}")
    if device not in DEVICES:
        raise InputError(f"{prefix}device='{device}': expected one of {list(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(f"{prefix}device='cuda' but torch sees no CUDA device")


def load_mace_module(path: str | Path, device: str = "cpu") -> torch.nn.Module:
    """The torch module saved in a MACE .model file, on ``device``; InputError naming the file when it is
    missing or not a MACE model."""
    from capml.io.torchfile import load_torch_file, saved_kind

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: MACE model file not found")
    module = load_torch_file(path, "a MACE model", map_location=device, weights_only=False)
    if not isinstance(module, torch.nn.Module) or not hasattr(module, "atomic_numbers"):
        kind = saved_kind(path)
        raise InputError(f"{path}: not a MACE model{f' but {kind}' if kind else ''} (expected a .model file saved "
                         "by mace-torch)")
    return module


def check_elements(module: torch.nn.Module, symbols: Iterable[str], where: str) -> None:
    """InputError when the system has an element the MACE model was not trained on."""
    from ase.data import atomic_numbers, chemical_symbols

    known = {int(z) for z in module.atomic_numbers}
    missing = sorted({str(s) for s in symbols if atomic_numbers.get(str(s)) not in known})
    if missing:
        raise InputError(f"{where}: the model knows {[chemical_symbols[z] for z in sorted(known)]}, not {missing}; "
                         "expected a model trained on every element of the system")


def mace_calculator(
    model_path: str | Path,
    dtype: Literal["float64", "float32"] = "float64",
    device: Literal["cpu", "cuda"] = "cpu",
) -> Calculator:
    """mace-torch's MACECalculator for ``model_path`` with energy, forces and stress, in ``dtype`` on ``device``."""
    from mace.calculators import MACECalculator

    check_dtype_device(dtype, device)
    return MACECalculator(models=load_mace_module(model_path, device), device=device, default_dtype=dtype)
