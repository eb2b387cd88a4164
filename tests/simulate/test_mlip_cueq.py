"""MACE on cuequivariance kernels (simulate.cueq): the converted model gives e3nn's energies, forces and stresses
(mace-torch's converter, run by capml on the model's device and dtype), `auto` converts only on a GPU, and a request
for kernels that are not installed is one clear error."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from capml.errors import InputError
from capml.simulate.mlip import batched_model, use_cueq
from capml.structures.system import load_system


def structures():
    system = load_system("ag3sbri")
    cells = []
    for k, seed in ((0, 0), (4, 1), (8, 2)):
        atoms = system.build(system.decorations(k)[0])
        atoms.rattle(0.05, seed=seed)
        cells.append(atoms)
    return cells


def test_cueq_choice_follows_the_device_and_the_installation(monkeypatch):
    assert use_cueq("false", "cuda") is False and use_cueq(False, "cuda") is False
    with pytest.raises(InputError, match="simulate.cueq='fast'"):
        use_cueq("fast", "cpu")
    installed = types.ModuleType("stand-in")  # an importable module in place of the package: the decision only
    monkeypatch.setitem(sys.modules, "cuequivariance_torch", installed)
    monkeypatch.setitem(sys.modules, "cuequivariance_ops_torch", installed)
    assert use_cueq("auto", "cpu") is False and use_cueq("auto", "cuda:0") is True and use_cueq(True, "cpu") is True
    monkeypatch.setitem(sys.modules, "cuequivariance_ops_torch", None)  # no CUDA kernels: the fallback is slow
    assert use_cueq("auto", "cuda") is False and use_cueq("true", "cuda") is True
    monkeypatch.setitem(sys.modules, "cuequivariance_torch", None)  # not installed
    assert use_cueq("auto", "cuda") is False
    with pytest.raises(InputError, match="cuequivariance-torch is not installed"):
        use_cueq("true", "cpu")


@pytest.mark.parametrize("dtype,tolerance", [("float64", 1e-9), ("float32", 2e-4)])
def test_cueq_model_gives_the_e3nn_energies_forces_and_stresses(mace_model_path, dtype, tolerance):
    pytest.importorskip("cuequivariance_torch")
    import torch_sim as ts

    default = torch.get_default_dtype()
    models = {flag: batched_model(mace_model_path, dtype, "cpu", compute_stress=True, cueq=flag)
              for flag in ("false", "true")}
    assert torch.get_default_dtype() == default  # the converter's global dtype change is undone
    assert "cuequivariance" not in type(models["false"].model.products[0].symmetric_contractions).__module__
    assert "cuequivariance" in type(models["true"].model.products[0].symmetric_contractions).__module__
    state = ts.io.atoms_to_state(structures(), torch.device("cpu"), models["false"].dtype)
    e3nn, cueq = (models[flag](state) for flag in ("false", "true"))
    for key in ("energy", "forces", "stress"):
        np.testing.assert_allclose(cueq[key].detach().numpy(), e3nn[key].detach().numpy(), atol=tolerance)
