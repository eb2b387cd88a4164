"""The two faces of one MACE model file: an ASE calculator (relaxations, phonons) and a batched
torch-sim model (MD over many systems at once). Both load the same weights, so the stages agree."""

from __future__ import annotations

from pathlib import Path

import torch

from capml.errors import InputError

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _check(model_path: str | Path | None, dtype: str) -> Path:
    if model_path is None:
        raise InputError("simulate.mlip_model: not set (the system names no MACE model: set system.mlip_model "
                         "or simulate.mlip_model to a .model file)")
    path = Path(model_path)
    if not path.is_file():
        raise InputError(f"simulate.mlip_model={path}: MACE model file not found (train one with "
                         "`train.py` MLIP stage or point simulate.mlip_model at a .model file)")
    if dtype not in DTYPES:
        raise InputError(f"simulate.dtype='{dtype}': expected one of {sorted(DTYPES)}")
    return path


def load_mace_module(path: Path, device: str = "cpu"):
    """The torch module saved in a MACE .model file; InputError naming the file when it is not one."""
    try:
        module = torch.load(path, map_location=device, weights_only=False)
    except Exception as err:  # torch.load raises many types for a file that is not a model
        raise InputError(f"{path}: cannot load as a MACE model ({type(err).__name__}: "
                         f"{' '.join(str(err).split())[:160]})") from err
    if not isinstance(module, torch.nn.Module) or not hasattr(module, "atomic_numbers"):
        raise InputError(f"{path}: not a MACE model (expected a .model file saved by mace-torch)")
    return module


def check_elements(module, symbols, where: str) -> None:
    """InputError when the system has an element the MACE model was not trained on."""
    from ase.data import atomic_numbers, chemical_symbols

    known = {int(z) for z in module.atomic_numbers}
    missing = sorted({str(s) for s in symbols if atomic_numbers.get(str(s)) not in known})
    if missing:
        raise InputError(f"{where}: the model knows {[chemical_symbols[z] for z in sorted(known)]}, not {missing}; "
                         "expected a model trained on every element of the system")


def ase_calculator(model_path: str | Path, dtype: str = "float64", device: str = "cpu"):
    from capml.mlip.calculator import mace_calculator

    return mace_calculator(_check(model_path, dtype), dtype=dtype, device=device)


NEIGHBOUR_LISTS = ("batched", "per_system")


def batched_model(model_path: str | Path, dtype: str = "float64", device: str = "cpu",
                  compute_stress: bool = False, neighbour_list: str = "batched", skin_A: float = 1.0):
    """torch-sim ``MaceModel`` around the MACE module saved in ``model_path``. ``neighbour_list="batched"``: one
    neighbour-list pass for all systems on the model's device with a Verlet skin (capml.simulate.neighbours);
    ``"per_system"``: torch-sim's own loop (vesin per system on the CPU)."""
    from torch_sim.models.mace import MaceModel

    from capml.simulate.neighbours import batched_mace_model

    if neighbour_list not in NEIGHBOUR_LISTS:
        raise InputError(f"simulate.md.neighbour_list={neighbour_list!r}: expected one of {list(NEIGHBOUR_LISTS)}")
    path = _check(model_path, dtype)
    module = load_mace_module(path, device)
    # forces need gradients with respect to positions only; with trainable weights every step's backward pass
    # also builds weight gradients, which doubled the cost of a step (33 vs 65 ms for a 40-atom cell on one core)
    module.requires_grad_(False)
    if neighbour_list == "batched":
        return batched_mace_model(module, torch.device(device), DTYPES[dtype], compute_stress=compute_stress,
                                  skin_A=skin_A)
    return MaceModel(module, device=torch.device(device), dtype=DTYPES[dtype], compute_forces=True,
                     compute_stress=compute_stress)
