"""Test data for tests/mlip: EMT Cu-Ag alloy cells labelled on the spot (milliseconds per label), and configs."""

from __future__ import annotations

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from omegaconf import OmegaConf

from capml.cli import CONFIG_DIR
from capml.labels.base import Labels


def emt_frames(n_configs: int = 12, per_config: int = 2, seed: int = 0, force_scale: float = 1.0):
    """Rattled, strained 8-atom fcc Cu-Ag cells with EMT energy/forces/stress; ``force_scale`` multiplies
    energies, forces and stresses (a stand-in for a second fidelity of the same potential-energy surface)."""
    rng = np.random.default_rng(seed)
    frames = []
    for c in range(n_configs):
        occupation = rng.random(8) < 0.4
        for s in range(per_config):
            atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((1, 1, 2))
            atoms.set_chemical_symbols(["Ag" if o else "Cu" for o in occupation])
            atoms.set_cell(atoms.cell * (1 + rng.uniform(-0.02, 0.02)), scale_atoms=True)
            atoms.positions += rng.normal(0, 0.08, atoms.positions.shape)
            atoms.calc = EMT()
            labels = Labels(energy_eV=force_scale * atoms.get_potential_energy(),
                            forces_eV_A=force_scale * atoms.get_forces(),
                            stress_eV_A3=force_scale * atoms.get_stress(voigt=False))
            frame = labels.apply_to(atoms)
            frame.info.update(structure_id=f"c{c}_s{s}", config_id=f"c{c}", x=float(occupation.mean()))
            frames.append(frame)
    return frames


def mlip_config(**overrides):
    """The shipped mlip config group with test overrides (dotted keys), on a system with no keys set."""
    cfg = OmegaConf.create({"mlip": OmegaConf.load(CONFIG_DIR / "mlip" / "default.yaml"),
                            "system": OmegaConf.load(CONFIG_DIR / "system" / "_defaults.yaml")})
    for key, value in overrides.items():
        OmegaConf.update(cfg, f"mlip.{key}", value, merge=False)
    return cfg
