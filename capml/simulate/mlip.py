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
CUEQ = ("auto", "true", "false")


def use_cueq(cueq: str | bool, device: str) -> bool:
    """Whether to run MACE on cuequivariance kernels (``simulate.cueq``): ``auto`` when cuequivariance-torch is
    installed (the optional extra ``capml[cueq]``) with its CUDA kernels (cuequivariance-ops-torch-cu12) and the
    device is a GPU, ``true`` always (an error when it is not
    installed; on a CPU its fallback is 4x slower than e3nn), ``false`` never."""
    value = str(cueq).lower()
    if value not in CUEQ:
        raise InputError(f"simulate.cueq={cueq!r}: expected one of {list(CUEQ)}")
    if value == "false":
        return False
    try:
        import cuequivariance_torch  # noqa: F401
    except ImportError:
        if value == "true":
            raise InputError("simulate.cueq=true: cuequivariance-torch is not installed (pip install "
                             "'capml[cueq]', with cuequivariance-ops-torch-cu12 for the GPU kernels)") from None
        return False
    if value == "true":
        return True
    try:  # auto: only where the CUDA kernels are there (without them the package falls back to slow torch code)
        import cuequivariance_ops_torch  # noqa: F401
    except ImportError:
        return False
    return str(device).startswith("cuda")


def cueq_module(module: torch.nn.Module, dtype: str, device: str) -> torch.nn.Module:
    """The same MACE with its tensor products, symmetric contractions and linear layers on cuequivariance
    (mace-torch's own converter; energies, forces and stresses within 1e-9 in float64, tests/simulate/test_mlip_cueq.py;
    the converter fuses the convolution only for the device named exactly "cuda")."""
    from mace.cli.convert_e3nn_cueq import run as e3nn_to_cueq

    default = torch.get_default_dtype()
    try:  # the converter builds the new module in the default dtype and sets it globally
        return e3nn_to_cueq(module.to(DTYPES[dtype]), device=str(device), return_model=True)
    finally:
        torch.set_default_dtype(default)


def batched_model(model_path: str | Path, dtype: str = "float64", device: str = "cpu",
                  compute_stress: bool = False, neighbour_list: str = "batched", skin_A: float = 1.0,
                  cueq: str | bool = "false"):
    """torch-sim ``MaceModel`` around the MACE module saved in ``model_path``. ``neighbour_list="batched"``: one
    neighbour-list pass for all systems on the model's device with a Verlet skin (capml.simulate.neighbours);
    ``"per_system"``: torch-sim's own loop (vesin per system on the CPU). ``cueq``: see :func:`use_cueq`."""
    from torch_sim.models.mace import MaceModel

    from capml.simulate.neighbours import batched_mace_model

    if neighbour_list not in NEIGHBOUR_LISTS:
        raise InputError(f"simulate.md.neighbour_list={neighbour_list!r}: expected one of {list(NEIGHBOUR_LISTS)}")
    module = load_mace_module(_model_file(model_path, dtype, device), device)
    if use_cueq(cueq, device):
        module = cueq_module(module, dtype, device)
    # forces need gradients with respect to positions only; with trainable weights every step's backward pass
    # also builds weight gradients, which doubled the cost of a step (33 vs 65 ms for a 40-atom cell on one core)
    module.requires_grad_(False)
    if neighbour_list == "batched":
        return batched_mace_model(module, torch.device(device), DTYPES[dtype], compute_stress=compute_stress,
                                  skin_A=skin_A)
    return MaceModel(module, device=torch.device(device), dtype=DTYPES[dtype], compute_forces=True,
                     compute_stress=compute_stress)
