"""The names capml gives its quantities, with their units: one registry for ``Atoms.info`` keys and table columns.

A key names its unit in its suffix (``_K``, ``_fs``, ``_eV``, ``_A``) wherever the name is capml's own. Two kinds of
temperature are kept apart: ``temperature_K`` is always a set-point (the sampler's temperature of a dataset frame,
the thermostat's of an MD run, the row of a results table), ``kinetic_temperature_K`` the instantaneous
2 KE / (3 N k_B) of one MD frame. Dataset files (format of ``capml.io.contract``) keep the key ``temperature``
for the sampler's set-point, so files already labelled stay valid; :func:`canonical_info` reads older MD
trajectories, whose frames named the set-point ``target_temperature_K`` and the kinetic value ``temperature_K``.

Splits are ``train``, ``val`` and ``test`` (``SPLITS``) for the gap models and the MLIP alike (``mlip.val_fraction``,
``val.extxyz``; only the flag handed to mace-torch keeps its own name, ``--valid_file``). ``splits.json`` files written
before carry ``valid``; :func:`capml.mlip.data.pinned_split` reads both.
"""

from __future__ import annotations

from dataclasses import dataclass

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Key:
    name: str
    unit: str      # "" for a label or an id, "1" for a dimensionless number
    meaning: str


KEYS = {k.name: k for k in (
    Key("structure_id", "", "unique id of a structure within a dataset (labels are resumed by it)"),
    Key("config_id", "", "the decoration (configuration) a structure belongs to: the group of grouped splits"),
    Key("x", "1", "fraction of system.species[0] on the mixed sites"),
    Key("n_occupied", "1", "number of mixed sites holding system.species[0] (inside capml.structures only)"),
    Key("temperature", "K", "dataset files: the sampler's set-point temperature of a frame (0 for relaxed ones)"),
    Key("temperature_K", "K", "set-point temperature (thermostat, sampler, table rows)"),
    Key("kinetic_temperature_K", "K", "instantaneous kinetic temperature 2 KE / (3 N k_B) of one MD frame"),
    Key("time_fs", "fs", "simulated time of an MD frame"),
    Key("step", "1", "integrator step of an MD frame"),
    Key("energy_eV", "eV", "MLIP potential energy of an MD frame (whole cell)"),
    Key("REF_energy", "eV", "reference (DFT) energy of the whole cell"),
    Key("REF_forces", "eV/Å", "reference forces"),
    Key("REF_stress", "eV/Å³", "reference stress, Voigt order, ASE sign convention"),
    Key("gap_<fidelity>", "eV", "band gap at a fidelity (gap_pbesol, gap_hse06, ...)"),
    Key("multiplicity", "1", "number of decorations in a configuration's symmetry orbit"),
)}

# MD frames written before the registry: old name -> current name (applied in this order)
_MD_RENAMES = (("temperature_K", "kinetic_temperature_K"), ("target_temperature_K", "temperature_K"))


def canonical_info(info: dict) -> dict:
    """``info`` of an MD frame with the registry's names (in place; returned): frames of older trajectories named
    the set-point ``target_temperature_K`` and the kinetic temperature ``temperature_K``."""
    if "target_temperature_K" in info:
        for old, new in _MD_RENAMES:
            info[new] = info.pop(old)
    return info
