"""Relax positions and cell together: one structure with an ASE optimiser on a FrechetCellFilter (:func:`relax`),
or many at once with the same FIRE steps in one batched model call per step (:func:`relax_batch`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from typing import Callable, Sequence

import numpy as np
import torch
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS, FIRE, LBFGS

from capml.errors import InputError

OPTIMIZERS = {"FIRE": FIRE, "BFGS": BFGS, "LBFGS": LBFGS}


@dataclass
class Relaxed:
    atoms: Atoms  # relaxed copy, no calculator attached
    energy_eV: float
    max_force_eV_A: float
    max_stress_eV_A3: float
    steps: int
    converged: bool


def relax(
    atoms: Atoms,
    calculator: Calculator,
    fmax_eV_A: float = 0.01,
    max_steps: int = 500,
    optimizer: str = "FIRE",
    relax_cell: bool = True,
    pressure_GPa: float = 0.0,
) -> Relaxed:
    """Minimise the energy of a copy of ``atoms``; the cell too unless ``relax_cell`` is False.

    Converged means, within ``max_steps``, every row of the FrechetCellFilter's forces below ``fmax_eV_A``: each
    atom's force (times the deformation gradient F of the cell since the start) and each row of the cell force,
    the derivative of the enthalpy with respect to log F divided by the number of atoms (close to
    -volume (stress + pressure) / n_atoms, in eV; 0.01 eV is 0.04 GPa for a 40-atom cell of 1,600 Å³).
    """
    if optimizer not in OPTIMIZERS:
        raise InputError(f"relax optimizer='{optimizer}': expected one of {sorted(OPTIMIZERS)}")
    work = atoms.copy()
    work.calc = calculator
    target = FrechetCellFilter(work, scalar_pressure=pressure_GPa * units.GPa) if relax_cell else work
    opt = OPTIMIZERS[optimizer](target, logfile=None)
    with warnings.catch_warnings():
        # the filter takes scipy's logm of the deformation gradient, which warns when its own error estimate passes
        # 1000 machine epsilons: near the identity that is ~3e-13 relative, far below any force or stress it feeds
        warnings.filterwarnings("ignore", "logm result may be inaccurate", RuntimeWarning)
        converged = bool(opt.run(fmax=fmax_eV_A, steps=max_steps))
    forces = work.get_forces()
    stress = work.get_stress(voigt=False) if relax_cell else np.zeros((3, 3))
    result = work.copy()
    result.calc = None
    return Relaxed(
        atoms=result,
        energy_eV=float(work.get_potential_energy()),
        max_force_eV_A=float(np.linalg.norm(forces, axis=1).max()),
        max_stress_eV_A3=float(np.abs(stress).max()),
        steps=int(opt.nsteps),
        converged=converged,
    )


# ase.optimize.FIRE's defaults: relax_batch takes the steps relax(optimizer="FIRE") takes
FIRE_DT_START, FIRE_DT_MAX, FIRE_N_MIN, FIRE_F_INC, FIRE_F_DEC = 0.1, 1.0, 5, 1.1, 0.5
FIRE_ALPHA_START, FIRE_F_ALPHA, FIRE_MAX_STEP_A = 0.1, 0.99, 0.2


def relax_batch(
    atoms_list: Sequence[Atoms],
    model,
    fmax_eV_A: float = 0.01,
    max_steps: int = 500,
    pressure_GPa: float = 0.0,
    on_done: Callable[[int, Relaxed], None] | None = None,
) -> list[Relaxed]:
    """:func:`relax` with FIRE for every structure of ``atoms_list`` at once: one model call per step for all
    structures still relaxing. ``model`` is a torch-sim model that computes stress (e.g.
    ``capml.simulate.mlip.batched_model(path, compute_stress=True)``).

    Each structure follows ASE's FIRE on a FrechetCellFilter step for step (same degrees of freedom, forces, FIRE
    parameters and order of updates, same convergence test and step count), so the results are those of
    ``relax(atoms, calculator, fmax_eV_A, max_steps, "FIRE", pressure_GPa=pressure_GPa)`` up to rounding. A structure
    leaves the batch when it has converged or taken ``max_steps`` steps; ``on_done(index, result)`` is called then.
    Returns the results in the order of ``atoms_list``, each a copy of its input (atom order, info and arrays kept).

    torch-sim 0.3's ``frechet_cell_fire(md_flavor="ase_fire")`` is not used: it lowers FIRE's alpha before the
    velocity mixing where ASE lowers it after, so its path leaves ASE's once alpha first shrinks (on the small test
    MACE: equal to 1e-11 Å up to step 5, 1e-7 Å apart at step 10, 1e-3 Å at step 40), and it takes the cell forces'
    Fréchet derivatives in a Python loop of 9 calls per system and step.
    """
    if not atoms_list:
        return []
    if not getattr(model, "compute_stress", False):
        raise InputError("relax_batch: the model does not compute stress (batched_model(..., compute_stress=True))")
    if any(a.constraints for a in atoms_list):
        raise InputError("relax_batch: constraints are not supported (use relax)")
    pressure = pressure_GPa * units.GPa  # eV/Å^3
    results: list[Relaxed | None] = [None] * len(atoms_list)
    batch = _FireBatch.start(atoms_list, model.device, model.dtype)
    _evaluate(batch, model, pressure)
    while True:
        converged = _max_force(batch) < fmax_eV_A
        done = converged | (batch.steps >= max_steps)
        if done.any():
            for s in done.nonzero().flatten().tolist():
                i = int(batch.index[s])
                results[i] = _result(batch, s, atoms_list[i], bool(converged[s]))
                if on_done is not None:
                    on_done(i, results[i])
            if done.all():
                return results
            batch = batch.select(~done)
        _fire_step(batch)
        _evaluate(batch, model, pressure)


@dataclass
class _FireBatch:
    """The structures still relaxing. Degrees of freedom as ASE's FrechetCellFilter: x, the positions mapped back
    into the starting cell (r = x F^T), and u = n_atoms log F, F the deformation gradient since the start
    (cell = start cell F^T, as row vectors). The ``*_force`` fields are the filter's forces on them."""

    index: torch.Tensor           # (systems,) position in the caller's list
    steps: torch.Tensor           # (systems,) FIRE steps taken
    n_atoms: torch.Tensor         # (systems,)
    start_cell: torch.Tensor      # (systems, 3, 3)
    u: torch.Tensor               # (systems, 3, 3)
    u_velocity: torch.Tensor
    u_force: torch.Tensor
    dt: torch.Tensor              # (systems,) FIRE time step, mixing parameter and steps since the last uphill one
    alpha: torch.Tensor
    n_positive: torch.Tensor
    energy_eV: torch.Tensor       # (systems,) at the current positions and cell
    stress_eV_A3: torch.Tensor    # (systems, 3, 3)
    cell: torch.Tensor            # (systems, 3, 3)
    system_idx: torch.Tensor      # (atoms,)
    numbers: torch.Tensor
    masses: torch.Tensor
    x: torch.Tensor               # (atoms, 3)
    x_velocity: torch.Tensor
    x_force: torch.Tensor
    forces_eV_A: torch.Tensor     # (atoms, 3) the model's forces
    positions: torch.Tensor       # (atoms, 3)

    @classmethod
    def start(cls, atoms_list: Sequence[Atoms], device, dtype) -> "_FireBatch":
        import torch_sim as ts

        state = ts.io.atoms_to_state(list(atoms_list), device, dtype)
        n_systems, n_atoms = state.n_systems, state.n_atoms
        per_system = dict(device=device, dtype=dtype)
        zeros_3x3 = torch.zeros(n_systems, 3, 3, **per_system)
        zeros_atoms = torch.zeros(n_atoms, 3, **per_system)
        return cls(index=torch.arange(n_systems, device=device), steps=torch.zeros(n_systems, dtype=torch.long,
                   device=device), n_atoms=torch.bincount(state.system_idx).to(dtype),
                   start_cell=state.row_vector_cell.clone(), u=zeros_3x3, u_velocity=zeros_3x3.clone(),
                   u_force=zeros_3x3.clone(), dt=torch.full((n_systems,), FIRE_DT_START, **per_system),
                   alpha=torch.full((n_systems,), FIRE_ALPHA_START, **per_system),
                   n_positive=torch.zeros(n_systems, dtype=torch.long, device=device),
                   energy_eV=torch.zeros(n_systems, **per_system), stress_eV_A3=zeros_3x3.clone(),
                   cell=state.row_vector_cell.clone(), system_idx=state.system_idx, numbers=state.atomic_numbers,
                   masses=state.masses, x=state.positions.clone(), x_velocity=zeros_atoms,
                   x_force=zeros_atoms.clone(), forces_eV_A=zeros_atoms.clone(), positions=state.positions.clone())

    def select(self, keep: torch.Tensor) -> "_FireBatch":
        """The systems where ``keep`` (a boolean per system) holds, atoms in the same order."""
        atom_keep = keep[self.system_idx]
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            values[f.name] = value[keep] if f.name in _SYSTEM_FIELDS else value[atom_keep]
        values["system_idx"] = (torch.cumsum(keep, 0) - 1)[self.system_idx[atom_keep]]
        return _FireBatch(**values)

    def per_system_sum(self, atom_values: torch.Tensor) -> torch.Tensor:
        """Sum over each system's atoms of ``atom_values`` (atoms, ...) -> (systems,)."""
        total = torch.zeros(len(self.index), dtype=atom_values.dtype, device=atom_values.device)
        return total.index_add_(0, self.system_idx, atom_values.reshape(len(atom_values), -1).sum(1))


_SYSTEM_FIELDS = {"index", "steps", "n_atoms", "start_cell", "u", "u_velocity", "u_force", "dt", "alpha",
                  "n_positive", "energy_eV", "stress_eV_A3", "cell"}


def _evaluate(batch: _FireBatch, model, pressure_eV_A3: float) -> None:
    """Positions and cells from the degrees of freedom, the model on them, and the filter's forces
    (ase/_4/optimize/cellutil.py: CellUtility.get_forces_frechet, batched)."""
    import torch_sim as ts

    deform = torch.matrix_exp(batch.u / batch.n_atoms[:, None, None])  # F
    deform_of_atom = deform[batch.system_idx]
    batch.cell = batch.start_cell @ deform.mT
    batch.positions = torch.einsum("aij,aj->ai", deform_of_atom, batch.x)  # r = F x
    out = model(ts.SimState(positions=batch.positions, masses=batch.masses, cell=batch.cell.mT, pbc=True,
                            atomic_numbers=batch.numbers, system_idx=batch.system_idx))
    batch.energy_eV, batch.forces_eV_A, batch.stress_eV_A3 = out["energy"], out["forces"], out["stress"]
    volume = torch.linalg.det(batch.cell).abs()[:, None, None]
    identity = torch.eye(3, dtype=deform.dtype, device=deform.device)
    virial = -volume * (batch.stress_eV_A3 + pressure_eV_A3 * identity)
    cell_gradient = virial @ torch.linalg.inv(deform.mT)
    # ASE: force[m, n] = sum_ij L(log F, E_mn)_ij G_ij with L the Fréchet derivative of expm; that sum is
    # L((log F)^T, G)_mn, one 6x6 matrix exponential per system
    log_deform_t = (batch.u / batch.n_atoms[:, None, None]).mT
    batch.u_force = _expm_frechet(log_deform_t, cell_gradient) / batch.n_atoms[:, None, None]
    batch.x_force = torch.einsum("ai,aij->aj", batch.forces_eV_A, deform_of_atom)  # f F


def _expm_frechet(a: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Fréchet derivative of the matrix exponential at ``a`` in direction ``e``, batched (n, 3, 3): the upper-right
    block of expm([[a, e], [0, a]])."""
    block = torch.zeros(len(a), 6, 6, dtype=a.dtype, device=a.device)
    block[:, :3, :3] = a
    block[:, 3:, 3:] = a
    block[:, :3, 3:] = e
    return torch.matrix_exp(block)[:, :3, 3:]


def _max_force(batch: _FireBatch) -> torch.Tensor:
    """Per system, the largest row norm of the filter's forces (atoms and cell): ASE's convergence test."""
    atom_norm = batch.x_force.norm(dim=1)
    largest = torch.zeros(len(batch.index), dtype=atom_norm.dtype, device=atom_norm.device)
    largest = largest.scatter_reduce(0, batch.system_idx, atom_norm, reduce="amax")
    return torch.maximum(largest, batch.u_force.norm(dim=2).amax(dim=1))


def _fire_step(batch: _FireBatch) -> None:
    """One step of ase.optimize.FIRE.step for every system (its order: mix, then grow dt and shrink alpha)."""
    idx = batch.system_idx
    power = batch.per_system_sum(batch.x_force * batch.x_velocity) + (batch.u_force * batch.u_velocity).sum((1, 2))
    force2 = batch.per_system_sum(batch.x_force ** 2) + (batch.u_force ** 2).sum((1, 2))
    velocity2 = batch.per_system_sum(batch.x_velocity ** 2) + (batch.u_velocity ** 2).sum((1, 2))
    first = batch.steps == 0  # ASE starts from zero velocity, nothing to mix
    downhill = (power > 0) & ~first  # velocity along the force: ASE's vf > 0
    uphill = ~downhill & ~first
    mix = torch.where(downhill, batch.alpha * torch.sqrt(velocity2 / force2.clamp_min(1e-300)), 0.0)
    keep = torch.where(downhill, 1.0 - batch.alpha, torch.where(uphill, 0.0, 1.0))  # uphill: velocities to zero
    batch.x_velocity = keep[idx, None] * batch.x_velocity + mix[idx, None] * batch.x_force
    batch.u_velocity = keep[:, None, None] * batch.u_velocity + mix[:, None, None] * batch.u_force
    grow = downhill & (batch.n_positive > FIRE_N_MIN)
    batch.dt = torch.where(grow, (batch.dt * FIRE_F_INC).clamp_max(FIRE_DT_MAX),
                           torch.where(uphill, batch.dt * FIRE_F_DEC, batch.dt))
    batch.alpha = torch.where(grow, batch.alpha * FIRE_F_ALPHA, torch.where(uphill, FIRE_ALPHA_START, batch.alpha))
    batch.n_positive = torch.where(downhill, batch.n_positive + 1, torch.where(uphill, 0, batch.n_positive))

    batch.x_velocity = batch.x_velocity + batch.dt[idx, None] * batch.x_force
    batch.u_velocity = batch.u_velocity + batch.dt[:, None, None] * batch.u_force
    dx, du = batch.dt[idx, None] * batch.x_velocity, batch.dt[:, None, None] * batch.u_velocity
    norm = torch.sqrt(batch.per_system_sum(dx ** 2) + (du ** 2).sum((1, 2)))
    scale = torch.where(norm > FIRE_MAX_STEP_A, FIRE_MAX_STEP_A / norm, 1.0)
    batch.x = batch.x + scale[idx, None] * dx
    batch.u = batch.u + scale[:, None, None] * du
    batch.steps = batch.steps + 1


def _result(batch: _FireBatch, s: int, atoms: Atoms, converged: bool) -> Relaxed:
    mine = (batch.system_idx == s).nonzero().flatten()
    result = atoms.copy()
    result.calc = None
    result.set_cell(batch.cell[s].detach().cpu().numpy(), scale_atoms=False)
    result.set_positions(batch.positions[mine].detach().cpu().numpy())
    forces = batch.forces_eV_A[mine].detach()
    return Relaxed(atoms=result, energy_eV=float(batch.energy_eV[s]), max_force_eV_A=float(forces.norm(dim=1).max()),
                   max_stress_eV_A3=float(batch.stress_eV_A3[s].abs().max()), steps=int(batch.steps[s]),
                   converged=converged)
