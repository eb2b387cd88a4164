"""ASE calculator from a MACE model file: the MLIP that simulate uses.

float64 for phonons and relaxations (finite differences of 0.01 Å need the precision), float32 for MD (1.9x
faster for the bundled base model on a 40-atom cell on one CPU core, 41 vs 77 ms per force call; MD averages are
insensitive to the rounding).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ase.calculators.calculator import Calculator

from capml.errors import InputError

DTYPES = ("float64", "float32")
DEVICES = ("cpu", "cuda")


def mace_calculator(
    model_path: str | Path,
    dtype: Literal["float64", "float32"] = "float64",
    device: Literal["cpu", "cuda"] = "cpu",
) -> Calculator:
    """mace-torch's MACECalculator for ``model_path`` with energy, forces and stress, in ``dtype`` on ``device``."""
    import torch
    from mace.calculators import MACECalculator

    model_path = Path(model_path)
    if not model_path.is_file():
        raise InputError(f"{model_path}: MACE model file not found")
    if dtype not in DTYPES:
        raise InputError(f"dtype='{dtype}': expected one of {list(DTYPES)}")
    if device not in DEVICES:
        raise InputError(f"device='{device}': expected one of {list(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("device='cuda' but torch sees no CUDA device")
    try:
        return MACECalculator(model_paths=str(model_path), device=device, default_dtype=dtype)
    except Exception as err:  # torch.load raises many types for a file that is not a model
        raise InputError(f"{model_path}: cannot load as a MACE model ({type(err).__name__}: {err})") from err
