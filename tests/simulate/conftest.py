"""Fixtures for the simulate tests: a small MACE network (real architecture, untrained weights) for
plumbing through the MLIP code paths, and a harmonic force-constant model for exact physics checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase.data import atomic_numbers
from torch_sim.models.interface import ModelInterface


def small_mace(elements=("Ag", "S", "Br", "I"), r_max=5.0, seed=0):
    from mace import modules  # first: mace sets the torch.load flag e3nn's import needs
    from e3nn import o3

    torch.manual_seed(seed)
    z = sorted(atomic_numbers[e] for e in elements)
    model = modules.ScaleShiftMACE(
        r_max=r_max, num_bessel=6, num_polynomial_cutoff=5, max_ell=2,
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        num_interactions=2, num_elements=len(z), hidden_irreps=o3.Irreps("16x0e+16x1o"),
        MLP_irreps=o3.Irreps("8x0e"), atomic_energies=np.full(len(z), -2.0), avg_num_neighbors=20.0,
        atomic_numbers=z, correlation=2, gate=torch.nn.functional.silu,
        atomic_inter_scale=0.5, atomic_inter_shift=0.0,
    )
    return model.to(torch.float64)


@pytest.fixture(scope="session")
def mace_model_path(tmp_path_factory):
    from tests.conftest import built_once

    def build(folder):
        torch.save(small_mace(), folder / "small.model")
        return {"path": str(folder / "small.model")}

    return Path(built_once(tmp_path_factory, "small_mace", build)["path"])


class HarmonicModel(ModelInterface):
    """E = ½ uᵀΦu about reference positions, for one or more copies of the same supercell: an exact
    harmonic crystal whose normal modes phonopy gives independently."""

    def __init__(self, reference_positions: np.ndarray, force_constants: np.ndarray, n_copies: int = 1,
                 dtype=torch.float64):
        super().__init__()
        self._device, self._dtype = torch.device("cpu"), dtype
        self._compute_forces, self._compute_stress = True, False
        n = len(reference_positions)
        self.reference = torch.tensor(np.tile(reference_positions, (n_copies, 1)), dtype=dtype)
        self.phi = torch.tensor(force_constants.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n), dtype=dtype)
        self.n, self.n_copies = n, n_copies

    def forward(self, state):
        cell = state.row_vector_cell[0]
        u = (state.positions - self.reference).reshape(self.n_copies, self.n, 3)
        # torch-sim wraps positions and the crystal drifts as a whole under Langevin noise: take each
        # displacement relative to the first atom's, by minimum image (Φ is translation-invariant)
        u = u - u[:, :1]
        frac = u.reshape(-1, 3) @ torch.linalg.inv(cell)
        u = ((frac - torch.round(frac)) @ cell).reshape(self.n_copies, 3 * self.n)
        f = -u @ self.phi.T
        return {"energy": 0.5 * (u * (u @ self.phi.T)).sum(1), "forces": f.reshape(-1, 3)}


def simulate_config(workdir, *overrides: str):
    """conf/simulate.yaml composed as simulate.py would, with test overrides."""
    from hydra import compose, initialize_config_dir

    from capml.cli import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="simulate", overrides=[f"workdir={workdir}", *overrides])


def tiny_pipeline_overrides(mlip: str, gnn: str) -> list[str]:
    return [f"simulate.mlip_model={mlip}", f"simulate.gnn_checkpoint={gnn}", "simulate.gnn_checkpoint_beside=null",
            "simulate.x=[0,0.125,1]",
            "simulate.temperature=[300,600]", "simulate.configurations.reference=relaxed",
            "simulate.configurations.max_steps=3", "simulate.md.replicas=1", "simulate.md.timestep_fs=1.0",
            "simulate.md.n_steps=80", "simulate.md.save_every_steps=4", "simulate.md.dtype=float64",
            "simulate.nmd.discard_fs=0", "simulate.nmd.segments=1", "simulate.gaps.discard_fs=0"]


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory, mace_model_path, trained_run):
    """The whole pipeline on the small MACE and the test GNN: x = 0, 1/8, 1 at 300 and 600 K (once per test run;
    tests that write into a run copy it first)."""
    from capml.simulate.stages import run_stage
    from tests.conftest import built_once

    def build(folder):
        workdir = folder / "run"
        run_stage(simulate_config(workdir, "stage=pipeline", *tiny_pipeline_overrides(
            mace_model_path, trained_run["out"] / "checkpoints" / "best.ckpt")))
        return {"workdir": str(workdir)}

    return Path(built_once(tmp_path_factory, "pipeline_run", build)["workdir"])
