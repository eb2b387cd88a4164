"""VASP outputs as labels: the last ionic step of vasprun.xml (or OUTCAR when that is all there is)."""

from __future__ import annotations

from pathlib import Path

import ase.io
from ase import Atoms

from capml.errors import InputError
from capml.labels.bandgap import ase_calculator_gap
from capml.labels.base import Labels


def read_vasp(path: str | Path, fidelity: str = "pbesol") -> Atoms:
    """Atoms of the last ionic step with REF_energy/forces/stress and gap_<fidelity> from eigenvalues.

    The energy is VASP's energy(sigma->0) as ASE reads it; the gap counts states with occupation above
    one half as filled (never from the DOS).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: VASP output not found")
    fmt = "vasp-xml" if path.suffix == ".xml" or "vasprun" in path.name else "vasp-out"
    try:
        atoms = ase.io.read(path, index=-1, format=fmt)
    except Exception as err:
        raise InputError(f"{path}: cannot read as {fmt} ({type(err).__name__}: {err})") from err
    calc = atoms.calc
    if calc is None or "energy" not in calc.results:
        raise InputError(f"{path}: no energy in the last ionic step (expected a finished VASP calculation)")
    try:
        gap = {fidelity: ase_calculator_gap(calc).gap_eV}
    except Exception as err:
        raise InputError(f"{path}: no eigenvalues/occupations for the band gap ({err})") from err
    labels = Labels(
        energy_eV=atoms.get_potential_energy(),
        forces_eV_A=atoms.get_forces(),
        stress_eV_A3=atoms.get_stress(voigt=False) if "stress" in calc.results else None,
        gaps_eV=gap,
    )
    out = labels.apply_to(atoms)
    out.info.update({"source": str(path), "sampling": out.info.get("sampling", "vasp"),
                     "structure_id": out.info.get("structure_id", path.stem)})
    return out
