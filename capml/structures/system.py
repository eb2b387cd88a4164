"""The material: a parent cell with one sublattice shared by two species (a binary solid solution), built from
the ``system`` config group (conf/system/<name>.yaml).

A system config names the parent primitive cell (a prototype builder by ``_target_``, or a structure file that
ase.io.read reads), the symbol marking the mixed sublattice in it, the two species (x is the fraction of the
first), the end members' lattice constants (Vegard's law in between), the supercell and the end members' names.
Configs give compositions as fractions x = k / n_sites (structures.compositions, simulate.x); the site counts k
are worked out here (:func:`occupied_count`).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from ase import Atoms

from capml.errors import InputError
from capml.structures.decorations import Decoration, inequivalent_decorations, site_permutations
from capml.structures.prototypes import decorated_supercell, mixed_sites


@dataclass
class SolidSolution:
    """``primitive`` with its ``mixed_site`` sublattice a mixture of ``species[0]`` (fraction x) and ``species[1]``.

    With ``lattice_constants`` (Å per species) ``primitive`` is at unit lattice constant and every cell is scaled
    by Vegard's law; None keeps the cell of ``primitive`` (Å). ``end_members`` names each end member (its folder
    of phonons); None names it by its formula.
    """

    primitive: Atoms
    mixed_site: str
    species: tuple[str, str]
    lattice_constants: Mapping[str, float] | None
    supercell: tuple[int, int, int]
    end_members: Mapping[str, str] | None = None

    def __post_init__(self):
        self.species = tuple(str(s) for s in self.species)
        self.supercell = tuple(int(n) for n in self.supercell)
        if len(self.species) != 2 or self.species[0] == self.species[1]:
            raise InputError(f"system.species={list(self.species)}: expected two different chemical symbols")
        if len(self.supercell) != 3 or min(self.supercell) < 1:
            raise InputError(f"system.supercell={list(self.supercell)}: expected three positive integers")
        if self.mixed_site not in self.primitive.get_chemical_symbols():
            raise InputError(f"system.mixed_site={self.mixed_site}: not in the parent cell "
                             f"({self.primitive.get_chemical_formula()})")
        if not self.primitive.pbc.all():
            raise InputError("system.parent: expected a cell periodic in all three directions")

    @classmethod
    def from_config(cls, system: Mapping, **overrides) -> "SolidSolution":
        """From a ``system`` config (a DictConfig or a dict); ``overrides`` replace fields (e.g. supercell)."""
        from omegaconf import OmegaConf

        def get(key):  # only the keys read here are resolved (paths of models and data are not needed)
            value = system.get(key)
            return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value

        missing = [key for key in ("parent", "mixed_site", "species", "supercell") if get(key) is None]
        if missing:
            raise InputError(f"system: no {missing} (the keys of a system: conf/system/_defaults.yaml)")
        constants, names = get("lattice_constants"), get("end_members")
        fields = dict(
            primitive=parent_cell(get("parent")),
            mixed_site=str(get("mixed_site")),
            species=tuple(get("species")),
            lattice_constants=None if constants is None else {str(k): float(v) for k, v in constants.items()},
            supercell=tuple(get("supercell")),
            end_members=None if names is None else {str(k): str(v) for k, v in names.items()},
        )
        return cls(**{**fields, **overrides})

    def parent(self) -> Atoms:
        """The undecorated supercell: ``species[1]`` on every mixed site (x = 0)."""
        return self._supercell(None)

    def build(self, decoration: Decoration) -> Atoms:
        atoms = self._supercell(decoration.occupation)
        atoms.info["config_id"] = decoration.config_id
        atoms.info["multiplicity"] = decoration.multiplicity
        return atoms

    def unrelaxed(self, atoms: Atoms) -> Atoms:
        """The Vegard (unrelaxed) supercell with the decoration of ``atoms`` (a structure of this system in the
        supercell's atom order, relaxed or displaced)."""
        sites = self.site_indices()
        if len(atoms) != len(self.parent()):
            raise InputError(f"{atoms.info.get('config_id', 'structure')}: {len(atoms)} atoms, expected "
                             f"{len(self.parent())} (system supercell {list(self.supercell)})")
        occupation = np.array(atoms.get_chemical_symbols())[sites] == self.species[0]
        out = self._supercell(occupation)
        if list(out.numbers) != list(atoms.numbers):
            raise InputError(f"{atoms.info.get('config_id', 'structure')}: atoms not in the supercell's order")
        out.info.update({k: atoms.info[k] for k in ("config_id", "x", "multiplicity") if k in atoms.info})
        return out

    def end_member(self, species: str) -> Atoms:
        """The supercell with ``species`` on every mixed site."""
        if species not in self.species:
            raise InputError(f"end member '{species}': expected one of {list(self.species)}")
        return self._supercell(np.full(self.n_sites, species == self.species[0]))

    def end_member_name(self, species: str) -> str:
        if self.end_members and species in self.end_members:
            return self.end_members[species]
        return self.end_member(species).get_chemical_formula("metal", empirical=True)

    @property
    def n_sites(self) -> int:
        """Mixed sites of the supercell."""
        return len(mixed_sites(self.primitive, self.mixed_site)) * prod(self.supercell)

    def site_indices(self) -> np.ndarray:
        """Indices of the mixed sites in the supercell (the order occupations run over)."""
        return mixed_sites(self.primitive.repeat(self.supercell), self.mixed_site)

    @property
    def elements(self) -> list[str]:
        """Every element of the system's structures."""
        others = [s for s in dict.fromkeys(self.primitive.get_chemical_symbols()) if s != self.mixed_site]
        return others + [s for s in self.species if s not in others]

    @property
    def x_label(self) -> str:
        return f"x (fraction of {self.species[0]})"

    def decorations(self, n_occupied: int, max_enumerate: int = 20000, n_random: int = 100,
                    seed: int = 0) -> list[Decoration]:
        """Every inequivalent decoration with ``n_occupied`` sites of species[0], or, past ``max_enumerate``
        arrangements, the distinct orbits of ``n_random`` seeded random ones (exact multiplicities)."""
        perms = site_permutations(self.parent(), self.site_indices())
        return inequivalent_decorations(perms, n_occupied, max_enumerate=max_enumerate, n_random=n_random, seed=seed)

    def occupied_count(self, x: float, where: str = "x") -> int:
        """The number of ``species[0]`` sites of composition ``x``, which must be k / n_sites."""
        return occupied_count(x, self.n_sites, where)

    def _supercell(self, occupation: Sequence[bool] | None) -> Atoms:
        return decorated_supercell(self.primitive, self.mixed_site, self.species, self.lattice_constants,
                                   self.supercell, occupation)


def occupied_count(x: float, n_sites: int, where: str = "x") -> int:
    """k for a fraction x = k / n_sites; ``where`` names the option in the error."""
    k = round(float(x) * n_sites)
    if not 0 <= k <= n_sites or abs(k / n_sites - float(x)) > 1e-6:
        raise InputError(f"{where}={x}: expected a fraction k/{n_sites} between 0 and 1 "
                         f"(the supercell has {n_sites} mixed sites)")
    return k


def compositions_from_x(x_values: float | Sequence[float], n_sites: int, where: str = "simulate.x") -> list[int]:
    """Sorted distinct numbers of ``species[0]`` sites for the fractions ``x_values``; each must be k / n_sites.
    ``"all"``: every composition the supercell allows, 0..n_sites."""
    if isinstance(x_values, str) and x_values.strip().lower() == "all":
        return list(range(n_sites + 1))
    values = [x_values] if np.isscalar(x_values) else list(x_values)
    return sorted({occupied_count(x, n_sites, where) for x in values})


def parent_cell(parent) -> Atoms:
    """The primitive parent cell of a ``system.parent`` entry: a builder config with ``_target_`` (instantiated) or
    the path of a structure file (read by ase.io.read), as positions, cell and symbols only."""
    if isinstance(parent, Mapping) and "_target_" in parent:
        from hydra.errors import InstantiationException
        from hydra.utils import instantiate

        try:
            atoms = instantiate(dict(parent))
        except InstantiationException as err:
            raise InputError(f"system.parent: {' '.join(str(err).split())}") from err
    elif isinstance(parent, (str, Path)):
        path = Path(parent)
        if not path.is_file():
            raise InputError(f"system.parent={path}: structure file not found")
        from ase.io import read

        try:
            atoms = read(path)
        except Exception as err:  # ase raises many kinds for a file it cannot parse
            raise InputError(f"system.parent={path}: cannot read a structure ({' '.join(str(err).split())})") from err
    else:
        raise InputError(f"system.parent={parent!r}: expected a builder with _target_ or a structure file path")
    if not isinstance(atoms, Atoms):
        raise InputError(f"system.parent: the builder returned {type(atoms).__name__}, expected ase.Atoms")
    return Atoms(atoms.get_chemical_symbols(), positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)


def load_system(name: str | Path, **overrides) -> SolidSolution:
    """A system by name from capml's conf/system/ (e.g. ``"cspbbri"``) or from a YAML file path; ``overrides``
    replace fields (e.g. ``supercell=(2, 2, 1)``)."""
    from omegaconf import OmegaConf

    from capml.cli import CONFIG_DIR

    path = Path(name) if str(name).endswith((".yaml", ".yml")) else CONFIG_DIR / "system" / f"{name}.yaml"
    if not path.is_file():
        raise InputError(f"system '{name}': {path} not found")
    config = OmegaConf.create({"system": OmegaConf.load(path)})  # ${system.*} interpolations resolve as in Hydra
    return SolidSolution.from_config(config.system, **overrides)

