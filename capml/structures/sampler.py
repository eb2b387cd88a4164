"""Structure sets over compositions x temperatures x samples for a solid solution (capml.structures.system).

Per composition, decorations are drawn among the symmetry-inequivalent ones with probability
proportional to their multiplicity (i.e. uniformly over all arrangements). Phonon-informed
displacements use the end members' force constants interpolated linearly in x and the masses of
the actual decoration; uniform rattles and undisplaced (equilibrium) structures complete the set.
The set is written in a seeded shuffled order so that a partially labelled set stays balanced.
"""

from __future__ import annotations

from typing import Literal, Mapping, Sequence

import numpy as np
from ase import Atoms

from capml.errors import InputError
from capml.structures.decorations import Decoration
from capml.phonons import full_force_constants, load_phonons
from capml.structures.system import SolidSolution
from capml.structures.thermal import mixed_force_constants, thermal_displacements, uniform_rattle


def draw_decorations(decorations: Sequence[Decoration], count: int, rng: np.random.Generator) -> list[Decoration]:
    weights = np.array([d.multiplicity for d in decorations], dtype=float)
    picks = rng.choice(len(decorations), size=count, p=weights / weights.sum())
    return [decorations[i] for i in picks]


def sample_structures(
    system: SolidSolution,
    compositions: Sequence[float] | None,
    temperatures_K: Sequence[float],
    phonon_samples: int,
    uniform_samples: int,
    equilibrium_samples: int,
    end_member_phonons: Mapping[str, str] | None,
    rattle_amplitude_A: float = 0.2,
    statistics: Literal["quantum", "classical"] = "quantum",
    imaginary_modes: Literal["skip", "abs", "phonopy"] = "phonopy",
    max_enumerate: int = 20000,
    seed: int = 0,
    shuffle: bool = True,
) -> list[Atoms]:
    """The structure set. ``compositions`` lists fractions x of ``species[0]``, each k / n_sites of the supercell
    (None: all k = 0..n_sites).

    ``phonon_samples`` per (composition, temperature), ``uniform_samples`` and ``equilibrium_samples``
    per composition. ``end_member_phonons`` maps each species to a phonopy.yaml of its end member on the
    same supercell; it is needed only when ``phonon_samples`` > 0.
    """
    rng = np.random.default_rng(seed)
    n_sites = system.n_sites
    compositions = list(range(n_sites + 1)) if compositions is None else [
        system.occupied_count(x, "structures.compositions") for x in compositions]
    fcs = _end_member_force_constants(system, end_member_phonons) if phonon_samples > 0 else None
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


def _end_member_force_constants(system: SolidSolution, end_member_phonons: Mapping[str, str] | None):
    if not end_member_phonons:
        raise InputError("system.end_member_phonons: phonon sampling needs a phonopy.yaml per end member "
                         f"({list(system.species)}); run `simulate.py stage=parents` first")
    fcs = []
    n_expected = len(system.parent())
    for species in system.species:
        if species not in end_member_phonons:
            raise InputError(f"system.end_member_phonons: no entry for '{species}'")
        phonon = load_phonons(end_member_phonons[species])
        fc = full_force_constants(phonon)
        if fc.shape[0] != n_expected:
            raise InputError(f"{end_member_phonons[species]}: force constants are for {fc.shape[0]} atoms, expected "
                             f"{n_expected} (supercell {list(system.supercell)} of the {len(system.primitive)}-atom "
                             "cell)")
        fcs.append(fc)
    return fcs
