"""The two faces of one MACE model file for the simulation stages: an ASE calculator (relaxations, phonons) and a
batched torch-sim model (MD over many systems at once). Both load through :mod:`capml.mlip.calculator`, so the
stages run the same weights; errors here name the ``simulate.*`` setting to change."""

from __future__ import annotations

from pathlib import Path

import torch

from capml.errors import InputError
from capml.mlip.calculator import DTYPES, check_dtype_device, load_mace_module, mace_calculator

# imported from here by capml/simulate/run.py and capml/mlip/train.py
from capml.mlip.calculator import check_elements  # noqa: F401


def _model_file(model_path: str | Path | None, dtype: str, device: str) -> Path:
    """The model file ``simulate.mlip_model`` names, after the checks that say which setting to change."""
    if model_path is None:
        raise InputError("simulate.mlip_model: not set (the system names no MACE model: set system.mlip_model "
                         "or simulate.mlip_model to a .model file)")
    path = Path(model_path)
    if not path.is_file():
        raise InputError(f"simulate.mlip_model={path}: MACE model file not found (train one with "
                         "`train.py` MLIP stage or point simulate.mlip_model at a .model file)")
    check_dtype_device(dtype, device, prefix="simulate.")
    return path


def ase_calculator(model_path: str | Path, dtype: str = "float64", device: str = "cpu"):
    return mace_calculator(_model_file(model_path, dtype, device), dtype=dtype, device=device)


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
    module = load_mace_module(_model_file(model_path, dtype, device), device)
    # forces need gradients with respect to positions only; with trainable weights every step's backward pass
    # also builds weight gradients, which doubled the cost of a step (33 vs 65 ms for a 40-atom cell on one core)
    module.requires_grad_(False)
    if neighbour_list == "batched":
        return batched_mace_model(module, torch.device(device), DTYPES[dtype], compute_stress=compute_stress,
                                  skin_A=skin_A)
    return MaceModel(module, device=torch.device(device), dtype=DTYPES[dtype], compute_forces=True,
                     compute_stress=compute_stress)
