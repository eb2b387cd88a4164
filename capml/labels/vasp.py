"""VASP outputs as capml frames.

vasprun.xml is read by pymatgen's ``Vasprun`` (every ionic step, eigenvalues and occupations, INCAR/parameters,
k-points, POTCARs); an OUTCAR with no vasprun.xml beside it by ASE's OUTCAR reader (ionic steps), pymatgen's
``Outcar`` (tags, electronic iterations) and :func:`outcar_eigenvalues` (the eigenvalue tables of every k-point:
ASE's reader finds none in an ISPIN=1 OUTCAR, which prints no "spin component" header).

- The functional, and so the fidelity name, comes from the run's own tags (GGA/METAGGA, LHFCALC, AEXX, HFSCREEN,
  LDAU, IVDW, POTCARs when GGA is unset): ``pbesol``, ``pbe``, ``hse06``, ``hsesol``, ``pbe0``, ``pbe_u``, ...
- The gap counts states with occupation above one half as filled, over every k-point (zero-weight band-path
  points included) and both spins; eigenvalues exist for the last ionic step only, so earlier steps carry
  energy, forces and stress and no gap.
- Ionic steps whose electronic loop hit NELM are not labels; a truncated file (a killed run) is named as such.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms, units

from capml.errors import InputError
from capml.labels.bandgap import BandGap, band_gap, normalised_occupations

KBAR_EV_A3 = 0.1 * units.GPa  # VASP prints stress in kbar, compressive positive (ASE's sign is the opposite)

GGA_NAMES = {"PE": "pbe", "PS": "pbesol", "RE": "revpbe", "RP": "rpbe", "91": "pw91", "AM": "am05",
             "OR": "optpbe", "BO": "optb88", "MK": "optb86b", "CA": "lda", "PZ": "lda", "B3": "b3lyp"}
METAGGA_NAMES = {"SCAN": "scan", "R2SCAN": "r2scan", "RSCAN": "rscan", "TPSS": "tpss", "RTPSS": "revtpss",
                 "MBJ": "mbj", "M06L": "m06l", "MS0": "ms0", "MS1": "ms1", "MS2": "ms2"}
IVDW_NAMES = {1: "d2", 10: "d2", 11: "d3", 12: "d3bj", 2: "ts", 20: "ts", 21: "tsh", 202: "mbd", 4: "ddsc"}
# the tags that decide the functional; recorded in the settings of the fidelity
XC_TAGS = ("GGA", "METAGGA", "LHFCALC", "AEXX", "HFSCREEN", "LDAU", "LDAUTYPE", "LDAUL", "LDAUU", "LDAUJ",
           "IVDW", "LUSE_VDW")


def _flag(value) -> bool:
    if isinstance(value, str):
        return value.strip().upper().lstrip(".").startswith("T")
    return bool(value)


def _unset(value) -> bool:
    return value is None or str(value).strip().upper().strip(".") in ("", "--", "NONE", "NULL", "F", "FALSE")


def functional_name(tags: dict, potcars: list[str]) -> str:
    """The fidelity name of a VASP run from its tags (``tags``: INCAR/parameters) and POTCAR titles, e.g.
    ``pbesol``, ``hse06`` (PBE-based HSE, HFSCREEN 0.2, AEXX 0.25), ``hsesol``, ``pbe0``, ``pbe_u``, ``r2scan``."""
    gga = str(tags.get("GGA", "--")).strip().upper()
    if _unset(gga):  # VASP takes the functional of the POTCARs
        titles = " ".join(potcars).upper()
        base = "pbe" if "PAW_PBE" in titles or "PBE" in titles else "pw91" if "PAW_GGA" in titles else (
            "lda" if titles.strip() else "gga")
    else:
        base = GGA_NAMES.get(gga, gga.lower())
    metagga = tags.get("METAGGA")
    if not _unset(metagga):
        base = METAGGA_NAMES.get(str(metagga).strip().upper(), str(metagga).strip().lower())
    name = base
    if _flag(tags.get("LHFCALC", False)):
        aexx = float(tags.get("AEXX", 0.25) if not _unset(tags.get("AEXX")) else 0.25)
        mu = float(tags.get("HFSCREEN", 0.0) if not _unset(tags.get("HFSCREEN")) else 0.0)
        if math.isclose(aexx, 1.0) and mu == 0:
            name = "hf"
        elif math.isclose(aexx, 0.25) and 0.2 <= mu <= 0.21:
            name = {"pbe": "hse06", "pbesol": "hsesol"}.get(base, f"hse06_{base}")
        elif math.isclose(aexx, 0.25) and math.isclose(mu, 0.3):
            name = {"pbe": "hse03"}.get(base, f"hse03_{base}")
        elif math.isclose(aexx, 0.25) and mu == 0:
            name = {"pbe": "pbe0", "pbesol": "pbesol0"}.get(base, f"{base}0")
        else:
            name = f"hybrid_{base}_aexx{aexx:g}_hfscreen{mu:g}".replace(".", "p")
    if _flag(tags.get("LDAU", False)):
        name += "_u"
    ivdw = tags.get("IVDW")
    if _flag(tags.get("LUSE_VDW", False)):  # nonlocal vdW-DF correlation (optB88-vdW is GGA=BO with it)
        name += "_vdw"
    elif not _unset(ivdw) and int(ivdw) != 0:
        name += "_" + IVDW_NAMES.get(int(ivdw), f"ivdw{int(ivdw)}")
    return name


@dataclass
class VaspRun:
    """One VASP output file read as frames (the ionic steps kept, labels attached) and what was found."""

    path: Path
    fidelity: str
    settings: dict
    frames: list[Atoms] = field(default_factory=list)
    n_steps: int = 0
    skipped_steps: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    truncated: bool = False
    gap: BandGap | None = None
    gap_error: str | None = None


def _tag_value(value):
    """One spelling for a tag whether pymatgen (vasprun.xml) or the OUTCAR gave it: bools, numbers, lists."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_tag_value(v) for v in value]
    text = str(value).strip()
    if text.upper().lstrip(".") in ("T", "TRUE", "F", "FALSE"):
        return _flag(text)
    try:
        return float(text)
    except ValueError:
        return text


def _tags_settings(tags: dict, potcars: list[str], encut, ismear, sigma, kpoints: dict, ispin) -> dict:
    xc = {k: _tag_value(tags[k]) for k in XC_TAGS if k in tags and not _unset(tags[k])}
    # only the tags that act (a run with LDAU = F or AEXX = 0 is spelled like one that does not print them)
    xc = {k: v.upper() if isinstance(v, str) else v for k, v in xc.items() if v not in (False, 0.0, [], [0.0])}
    if not xc.get("LHFCALC"):
        xc = {k: v for k, v in xc.items() if k not in ("AEXX", "HFSCREEN")}
    return {"code": "vasp", "xc_tags": xc,
            "encut_eV": None if encut is None else float(encut),
            "smearing": {"ISMEAR": None if ismear is None else int(ismear),
                         "SIGMA_eV": None if sigma is None else float(sigma)},
            "kpoints": kpoints, "potcars": [" ".join(p.split()) for p in potcars],
            "ispin": None if ispin is None else int(ispin)}


def vasp_gap(eigenvalues: np.ndarray, occupations: np.ndarray, weights: np.ndarray) -> BandGap:
    """Gap over every k-point and spin ((spins, k, bands) arrays), states with occupation > 1/2 filled.

    Zero-weight k-points (band-structure path points) get occupations from a Fermi level fixed by the weighted
    mesh, which never saw them; with Methfessel-Paxton smearing a valence state there can read 0.6 or 0.3. Where
    every weighted k-point of a spin has the same number of filled bands (an insulator), the zero-weight points of
    that spin are filled up to that number instead."""
    filled = normalised_occupations(occupations) > 0.5
    weights = np.asarray(weights, dtype=float)
    zero = weights == 0
    if zero.any() and (~zero).any() and len(weights) == filled.shape[1]:
        for s in range(filled.shape[0]):
            counts = filled[s][~zero].sum(axis=-1)
            if np.all(counts == counts[0]):
                filled[s][zero] = np.arange(filled.shape[2]) < counts[0]
    return band_gap(eigenvalues, filled.astype(float))


def _attach_labels(atoms: Atoms, energy, forces, stress) -> None:
    """REF_energy/forces/stress when the file has them as finite numbers; otherwise the reason in
    ``info["no_ref"]`` (VASP prints NaN forces and stress in some hybrid band-structure runs) and no REF_ keys."""
    energy = None if energy is None else float(energy)
    forces = None if forces is None else np.asarray(forces, dtype=float)
    if energy is None or not np.isfinite(energy):
        atoms.info["no_ref"] = "no finite energy in this ionic step"
    elif forces is None or forces.shape != (len(atoms), 3) or not np.all(np.isfinite(forces)):
        atoms.info["no_ref"] = "no finite forces in this ionic step (NaN in the file)"
    elif stress is not None and not np.all(np.isfinite(stress)):
        atoms.info["no_ref"] = "no finite stress in this ionic step (NaN in the file)"
    else:
        atoms.info["REF_energy"] = energy
        atoms.arrays["REF_forces"] = forces
        if stress is not None:
            atoms.info["REF_stress"] = np.asarray(stress, dtype=float)


def read_vasprun(path: Path, fidelity: str | None = None) -> VaspRun:
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.vasp.outputs import Vasprun

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            vr = Vasprun(str(path), parse_potcar_file=False, parse_dos=False, exception_on_bad_xml=False)
        except Exception as err:  # pymatgen/lxml raise many types on a broken file
            raise InputError(f"{path}: cannot read as vasprun.xml ({type(err).__name__}: "
                             f"{' '.join(str(err).split())[:200]})") from err
    truncated = any("malformed" in str(w.message) for w in caught)
    params = dict(vr.parameters or {})
    tags = {**params, **dict(vr.incar or {})}
    potcars = list(vr.potcar_symbols or [])
    kp = vr.kpoints
    kpoints = {"style": str(kp.style.name if hasattr(kp.style, "name") else kp.style) if kp is not None else None}
    if kp is not None and kp.num_kpts == 0:  # automatic mesh
        kpoints.update(mesh=[int(v) for v in kp.kpts[0]], shift=[float(v) for v in (kp.kpts_shift or (0, 0, 0))])
    elif kp is not None:
        kpoints.update(n_listed=int(kp.num_kpts))
    weights = np.asarray(vr.actual_kpoints_weights or [], dtype=float)
    kpoints["n_zero_weight"] = int((weights == 0).sum())
    name = fidelity or functional_name(tags, potcars)
    settings = _tags_settings(tags, potcars, params.get("ENMAX", tags.get("ENCUT")), params.get("ISMEAR"),
                              params.get("SIGMA"), kpoints, params.get("ISPIN"))
    settings["version"] = str(vr.vasp_version)
    run = VaspRun(Path(path), name, settings, truncated=truncated, n_steps=len(vr.ionic_steps))
    nelm = int(params.get("NELM", 60))
    for k, step in enumerate(vr.ionic_steps):
        electronic = step.get("electronic_steps") or []
        if len(electronic) >= nelm:
            run.skipped_steps.append((k, f"electronic SCF not converged ({len(electronic)} steps = NELM)"))
            continue
        # energy(sigma->0) as ASE and pymatgen's final_energy take it: the ionic step's free energy (it includes a
        # DFT-D/TS correction, which the SCF steps leave out) plus the SCF's sigma->0 correction (VASP <= 5.4
        # prints a wrong e_0_energy one level up)
        if electronic and step.get("e_fr_energy") is not None and electronic[-1].get("e_0_energy") is not None:
            energy = step["e_fr_energy"] + electronic[-1]["e_0_energy"] - electronic[-1]["e_fr_energy"]
        else:
            energy = electronic[-1].get("e_0_energy") if electronic else step.get("e_0_energy")
        forces, stress = step.get("forces"), step.get("stress")
        if energy is None or forces is None:
            run.skipped_steps.append((k, "no energy or forces in this ionic step"))
            continue
        atoms = AseAtomsAdaptor.get_atoms(step["structure"])
        for key in list(atoms.arrays):
            if key not in ("numbers", "positions"):
                del atoms.arrays[key]
        atoms.info.clear()
        atoms.calc = None
        _attach_labels(atoms, energy, forces, None if stress is None else -np.asarray(stress, float) * KBAR_EV_A3)
        atoms.info["ionic_step"] = k
        run.frames.append(atoms)
    if not vr.ionic_steps:
        run.warnings.append("no complete ionic step")
    last_complete = not truncated
    if vr.eigenvalues and last_complete and run.frames and run.frames[-1].info["ionic_step"] == run.n_steps - 1:
        spins = sorted(vr.eigenvalues, key=lambda s: -int(s))  # up, then down
        data = np.array([vr.eigenvalues[s] for s in spins])  # (spins, k, bands, [energy, occupation])
        try:
            run.gap = vasp_gap(data[..., 0], data[..., 1], weights)
        except InputError as err:
            run.gap_error = str(err)
    elif not vr.eigenvalues:
        run.gap_error = "no eigenvalues in the file"
    if not truncated and int(params.get("IBRION", -1) or -1) in (1, 2, 3) and int(params.get("NSW", 0) or 0) > 0:
        if not vr.converged_ionic:
            run.warnings.append(f"ionic relaxation not converged in {run.n_steps} steps (NSW "
                                f"{params.get('NSW')}, EDIFFG {params.get('EDIFFG')})")
    return run


_EIGEN_ROW = re.compile(r"^\s*\d+\s+(-?\d+\.\d+)\s+(-?\d+\.\d+)\s*$")
_KPOINT_HEADER = re.compile(r"^\s*k-point\s+(\d+)\s*:")
_SPIN_HEADER = re.compile(r"^\s*spin component\s+(\d+)\s*$")


def outcar_eigenvalues(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Eigenvalues and occupations ((spins, k-points, bands) arrays) of the last eigenvalue listing of an OUTCAR and
    the k-point weights (the last "k-points in reciprocal lattice and weights" table, 0 on band-path points); None
    when the file lists no eigenvalues or an incomplete listing (a killed run).

    The listing follows the last "E-fermi" line: per spin ("spin component N", absent at ISPIN=1) a
    "k-point N : kx ky kz" header and a "band No. band energies occupation" table per k-point. Every VASP 5 and 6
    OUTCAR prints it this way, for SCF, band-structure and hybrid runs alike."""
    lines = Path(path).read_text(errors="replace").splitlines()
    nkpts = next((int(m.group(1)) for line in lines if (m := re.search(r"NKPTS\s*=\s*(\d+)", line))), None)
    fermi = [i for i, line in enumerate(lines) if line.lstrip().startswith("E-fermi")]
    table = [i for i, line in enumerate(lines) if "k-points in reciprocal lattice and weights" in line]
    if nkpts is None or not fermi or not table:
        return None
    try:  # "   kx   ky   kz   weight" lines, the weight last (0.000 on a band-path point)
        weights = np.array([float(lines[i].split()[-1]) for i in range(table[-1] + 1, table[-1] + 1 + nkpts)])
    except (IndexError, ValueError):
        return None
    spins: dict[int, dict[int, list[tuple[float, float]]]] = {}
    spin, rows, spin_headers = 1, None, set()
    for line in lines[fermi[-1] + 1:]:
        if (m := _SPIN_HEADER.match(line)):
            spin, rows = int(m.group(1)), None
            spin_headers.add(spin)
        elif (m := _KPOINT_HEADER.match(line)):
            rows = spins.setdefault(spin, {}).setdefault(int(m.group(1)), [])
        elif rows is not None and (m := _EIGEN_ROW.match(line)):
            rows.append((float(m.group(1)), float(m.group(2))))
        elif spins and line.strip() and not line.lstrip().startswith(("band No.", "Fermi energy")):
            break  # the next section of the file (VASP 6.4 repeats "Fermi energy: ..." before each spin)
    expected = [1, 2] if spin_headers else [1]  # ISPIN=2 lists both spins, each under its header
    if sorted(spins) != expected or any(len(k) != nkpts for k in spins.values()):
        return None
    bands = {len(rows) for k in spins.values() for rows in k.values()}
    if len(bands) != 1 or 0 in bands:
        return None
    data = np.array([[spins[s][k] for k in sorted(spins[s])] for s in sorted(spins)])  # (spins, k, bands, 2)
    return data[..., 0], data[..., 1], weights


def read_outcar(path: Path, fidelity: str | None = None) -> VaspRun:
    import ase.io
    from pymatgen.io.vasp.outputs import Outcar

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcar = Outcar(str(path))
    except Exception as err:
        raise InputError(f"{path}: cannot read as OUTCAR ({type(err).__name__}: "
                         f"{' '.join(str(err).split())[:200]})") from err
    patterns = {key: rf"(?<![A-Z_]){key}\s*=\s*([^\s;]+)" for key in XC_TAGS + ("ENCUT", "ISMEAR", "SIGMA", "NELM",
                                                                          "ISPIN", "IBRION", "NSW")}
    patterns["POTCAR"] = r"^\s*POTCAR:\s+(.+)$"
    patterns["iteration"] = r"Iteration\s+(\d+)\(\s*(\d+)\)"
    patterns["version"] = r"^\s*vasp\.(\S+)"
    patterns["kpoints"] = r"k-points\s+NKPTS\s*=\s*(\d+)"
    outcar.read_pattern(patterns, reverse=False, terminate_on_match=False, postprocess=str)
    found = outcar.data
    tags = {k: found[k][0][0] for k in patterns if found.get(k) and k not in ("POTCAR", "iteration", "version")}
    potcars = list(dict.fromkeys(m[0].strip() for m in found.get("POTCAR", [])))
    name = fidelity or functional_name(tags, potcars)
    nk = int(found["kpoints"][0][0]) if found.get("kpoints") else None
    settings = _tags_settings(tags, potcars, tags.get("ENCUT", "").split()[0] if tags.get("ENCUT") else None,
                              tags.get("ISMEAR"), tags.get("SIGMA"), {"style": "from OUTCAR", "n_irreducible": nk},
                              tags.get("ISPIN"))
    settings["version"] = found["version"][0][0] if found.get("version") else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            images = ase.io.read(path, index=":", format="vasp-out")
    except Exception as err:
        raise InputError(f"{path}: cannot read the ionic steps of the OUTCAR ({type(err).__name__}: "
                         f"{' '.join(str(err).split())[:200]})") from err
    finished = bool(outcar.run_stats.get("Elapsed time (sec)")) if outcar.run_stats else False
    run = VaspRun(Path(path), name, settings, truncated=not finished, n_steps=len(images))
    electronic = {}
    for ionic, elec in found.get("iteration", []):
        electronic[int(ionic)] = max(electronic.get(int(ionic), 0), int(elec))
    nelm = int(tags.get("NELM", 60))
    for k, image in enumerate(images):
        if electronic.get(k + 1, 0) >= nelm:
            run.skipped_steps.append((k, f"electronic SCF not converged ({electronic[k + 1]} steps = NELM)"))
            continue
        calc = image.calc
        from ase.stress import voigt_6_to_full_3x3_stress

        atoms = Atoms(image.numbers, positions=image.positions, cell=image.cell, pbc=True)
        stress = calc.results.get("stress")
        _attach_labels(atoms, calc.results.get("energy"), calc.results.get("forces"),
                       None if stress is None else voigt_6_to_full_3x3_stress(np.asarray(stress, float)))
        atoms.info["ionic_step"] = k
        run.frames.append(atoms)
    if images and run.frames and run.frames[-1].info["ionic_step"] == len(images) - 1 and finished:
        listing = outcar_eigenvalues(path)
        if listing is None:
            run.gap_error = "no eigenvalues in the file"
        else:
            try:
                run.gap = vasp_gap(*listing)
            except InputError as err:
                run.gap_error = str(err)
    return run


def read_vasp_run(path: str | Path, fidelity: str | None = None) -> VaspRun:
    """Every ionic step of a vasprun.xml or OUTCAR with its labels; see the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: VASP output not found")
    is_xml = path.suffix == ".xml" or "vasprun" in path.name
    return read_vasprun(path, fidelity) if is_xml else read_outcar(path, fidelity)


def read_vasp(path: str | Path, fidelity: str | None = None) -> Atoms:
    """Atoms of the last ionic step with REF_energy/forces/stress and gap_<fidelity> from eigenvalues.

    ``fidelity``: None names it from the run's functional (``functional_name``). The energy is VASP's
    energy(sigma->0); the gap counts states with occupation above one half as filled (never from the DOS).
    """
    path = Path(path)
    run = read_vasp_run(path, fidelity)
    if run.truncated:
        raise InputError(f"{path}: truncated file (incomplete, e.g. a killed run) after "
                         f"{len(run.frames)} complete ionic steps; expected a finished VASP calculation")
    if not run.frames or run.frames[-1].info["ionic_step"] != run.n_steps - 1:
        reason = dict(run.skipped_steps).get(run.n_steps - 1, "no ionic step")
        raise InputError(f"{path}: last ionic step not usable ({reason})")
    if run.gap is None:
        raise InputError(f"{path}: no eigenvalues/occupations for the band gap ({run.gap_error})")
    atoms = run.frames[-1]
    atoms.info.pop("ionic_step", None)
    if "no_ref" in atoms.info:  # a band-structure run: its gap, no energy/forces/stress
        warnings.warn(f"{path}: {atoms.info.pop('no_ref')}; the frame has the gap and no REF_ labels", stacklevel=2)
    atoms.info[f"gap_{run.fidelity}"] = run.gap.gap_eV
    atoms.info.update({"source": str(path), "sampling": "vasp", "structure_id": path.stem,
                       f"direct_{run.fidelity}": run.gap.direct})
    return atoms
