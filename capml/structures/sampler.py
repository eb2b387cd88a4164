"""Structure sets over compositions x temperatures x samples for a mixed-halide A3BX solid solution.

Per composition, decorations are drawn among the symmetry-inequivalent ones with probability
proportional to their multiplicity (i.e. uniformly over all arrangements). Phonon-informed
displacements use the end members' force constants interpolated linearly in x and the masses of
the actual decoration; uniform rattles and undisplaced (equilibrium) structures complete the set.
The set is written in a seeded shuffled order so that a partially labelled set stays balanced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import comb
from typing import Literal, Mapping, Sequence

import numpy as np
from ase import Atoms

from capml.errors import InputError
from capml.structures.decorations import Decoration, inequivalent_decorations, site_permutations
from capml.structures.prototypes import halide_sites, mixed_halide_supercell
from capml.structures.thermal import full_force_constants, load_phonons, mixed_force_constants, \
    thermal_displacements, uniform_rattle


@dataclass
class SolidSolution:
    """A3BX with X a mixture of ``halides[0]`` (fraction x) and ``halides[1]``."""

    a_site: str = "Ag"
    b_site: str = "S"
    halides: tuple[str, str] = ("Br", "I")
    lattice_constants: Mapping[str, float] = field(default_factory=lambda: {"Br": 4.793, "I": 4.869})
    supercell: tuple[int, int, int] = (2, 2, 2)

    def parent(self) -> Atoms:
        return mixed_halide_supercell(self.a_site, self.b_site, self.halides, self.lattice_constants, self.supercell)

    def build(self, decoration: Decoration) -> Atoms:
        atoms = mixed_halide_supercell(self.a_site, self.b_site, self.halides, self.lattice_constants,
                                       self.supercell, decoration.occupation)
        atoms.info["config_id"] = decoration.config_id
        atoms.info["multiplicity"] = decoration.multiplicity
        return atoms

    def decorations(self, n_occupied: int, max_enumerate: int = 20000, seed: int = 0) -> list[Decoration]:
        parent = self.parent()
        perms = site_permutations(parent, halide_sites(parent, self.halides[1]))
        return inequivalent_decorations(perms, n_occupied, max_enumerate=max_enumerate, seed=seed)


def draw_decorations(decorations: Sequence[Decoration], count: int, rng: np.random.Generator) -> list[Decoration]:
    weights = np.array([d.multiplicity for d in decorations], dtype=float)
    picks = rng.choice(len(decorations), size=count, p=weights / weights.sum())
    return [decorations[i] for i in picks]


def sample_structures(
    system: SolidSolution,
    compositions: Sequence[int] | None,
    temperatures_K: Sequence[float],
    phonon_samples: int,
    uniform_samples: int,
    equilibrium_samples: int,
    parent_phonons: Mapping[str, str] | None,
    rattle_amplitude_A: float = 0.2,
    statistics: Literal["quantum", "classical"] = "quantum",
    imaginary_modes: Literal["skip", "abs", "phonopy"] = "phonopy",
    max_enumerate: int = 20000,
    seed: int = 0,
    shuffle: bool = True,
) -> list[Atoms]:
    """The structure set. ``compositions`` lists numbers of ``halides[0]`` sites (None: all 0..n).

    ``phonon_samples`` per (composition, temperature), ``uniform_samples`` and ``equilibrium_samples``
    per composition. ``parent_phonons`` maps each halide to a phonopy.yaml of its end member on the
    same supercell; it is needed only when ``phonon_samples`` > 0.
    """
    rng = np.random.default_rng(seed)
    n_sites = len(halide_sites(system.parent(), system.halides[1]))
    compositions = list(range(n_sites + 1)) if compositions is None else [int(k) for k in compositions]
    for k in compositions:
        if not 0 <= k <= n_sites:
            raise InputError(f"compositions: {k} is not a number of {system.halides[0]} sites in 0..{n_sites}")
    fcs = _end_member_force_constants(system, parent_phonons) if phonon_samples > 0 else None
    source = f"capml.structures.sampler seed={seed}"
    frames: list[Atoms] = []
    for k in compositions:
        decorations = system.decorations(k, max_enumerate=max_enumerate, seed=seed)
        plan = [("equilibrium", None, s) for s in range(equilibrium_samples)]
        plan += [("uniform", None, s) for s in range(uniform_samples)]
        plan += [("phonon", float(t), s) for t in temperatures_K for s in range(phonon_samples)]
        picks = draw_decorations(decorations, len(plan), rng)
        for (sampling, temperature, s), decoration in zip(plan, picks):
            atoms = system.build(decoration)
            sample_seed = int(rng.integers(2**31))
            if sampling == "uniform":
                atoms = uniform_rattle(atoms, rattle_amplitude_A, sample_seed)
            elif sampling == "phonon":
                fc = mixed_force_constants(fcs[0], fcs[1], k / n_sites)
                atoms.positions += thermal_displacements(atoms, fc, temperature, 1, sample_seed, statistics,
                                                         imaginary_modes)[0]
            tag = f"T{temperature:g}" if temperature is not None else "T0"
            atoms.info.update(
                structure_id=f"{sampling}_{decoration.config_id}_{tag}_s{s}",
                x=k / n_sites,
                temperature=float(temperature or 0.0),
                sampling=sampling,
                source=source,
            )
            frames.append(atoms)
    if shuffle:
        frames = [frames[i] for i in np.random.default_rng([seed, 1]).permutation(len(frames))]
    return frames


def _end_member_force_constants(system: SolidSolution, parent_phonons: Mapping[str, str] | None):
    if not parent_phonons:
        raise InputError("structures.parent_phonons: phonon sampling needs a phonopy.yaml per end member "
                         f"({list(system.halides)}); run `simulate.py stage=parents` first")
    fcs = []
    n_expected = len(system.parent())
    for halide in system.halides:
        if halide not in parent_phonons:
            raise InputError(f"structures.parent_phonons: no entry for '{halide}'")
        phonon = load_phonons(parent_phonons[halide])
        fc = full_force_constants(phonon)
        if fc.shape[0] != n_expected:
            raise InputError(f"{parent_phonons[halide]}: force constants are for {fc.shape[0]} atoms, expected "
                             f"{n_expected} (supercell {list(system.supercell)} of the 5-atom cell)")
        fcs.append(fc)
    return fcs


def composition_count(n_sites: int, k: int) -> int:
    return comb(n_sites, k)
