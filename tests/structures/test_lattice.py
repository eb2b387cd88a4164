"""stage=lattice: end-member lattice constants from an energy equation of state, checked against an independent
route (a stress-driven cell relaxation with ASE's FrechetCellFilter) and for resuming a killed run."""

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS

from capml.labels.ase_calc import ASECalculatorLabeller
from capml.structures.lattice import end_member_lattice_constants, fit_end_member
from capml.structures.system import SolidSolution


def cu_au(constants={"Cu": 3.56, "Au": 4.10}):
    """(Cu, Au) on fcc, the conventional 4-atom cell at unit lattice constant, 2x1x1 supercell (8 atoms)."""
    return SolidSolution(primitive=bulk("Cu", "fcc", a=1.0, cubic=True), mixed_site="Cu", species=("Cu", "Au"),
                         lattice_constants=constants, supercell=(2, 1, 1))


def relaxed_lattice_constant(symbol: str, start_A: float) -> float:
    atoms = bulk(symbol, "fcc", a=start_A, cubic=True)
    atoms.calc = EMT()
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-5, steps=200)
    return float(np.cbrt(atoms.get_volume()))


class Counting(ASECalculatorLabeller):
    def __init__(self, fail_after: int | None = None):
        super().__init__(EMT, fidelity="emt")
        self.calls, self.fail_after = 0, fail_after

    def label(self, atoms, extras=frozenset()):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        return super().label(atoms, extras)


def test_equation_of_state_matches_a_stress_relaxation(tmp_path):
    system = cu_au()
    results = end_member_lattice_constants(system, Counting(), tmp_path, strains_percent=np.linspace(-4, 4, 9))
    for species, start in (("Cu", 3.56), ("Au", 4.10)):
        reference = relaxed_lattice_constant(species, start)
        assert results[species]["lattice_constant_A"] == pytest.approx(reference, rel=2e-3)
        assert results[species]["start_lattice_constant_A"] == start
        assert results[species]["bulk_modulus_GPa"] > 50
    written = json.loads((tmp_path / "lattice_constants.json").read_text())
    assert written["fidelity"] == "emt" and set(written["end_members"]) == {"Cu", "Au"}
    assert (tmp_path / "Cu" / "eos.png").stat().st_size > 0


def test_a_killed_fit_resumes_to_the_same_numbers_without_recomputing(tmp_path):
    system = cu_au()
    whole = fit_end_member(system, "Cu", Counting(), tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        fit_end_member(system, "Cu", Counting(fail_after=4), tmp_path / "killed")
    resumed = Counting()
    again = fit_end_member(system, "Cu", resumed, tmp_path / "killed")
    assert resumed.calls == 3  # 7 strains, 4 cached
    assert again["lattice_constant_A"] == whole["lattice_constant_A"]


def test_a_minimum_outside_the_strains_is_refused(tmp_path):
    from capml.errors import InputError

    with pytest.raises(InputError, match="outside the strains"):
        fit_end_member(cu_au({"Cu": 3.0, "Au": 4.2}), "Cu", Counting(), tmp_path, strains_percent=[-2, -1, 0, 1, 2])


def test_stage_lattice_on_a_users_system_prints_the_override(tmp_path):
    """simulate.py stage=lattice labels=ase on a (Cu, Au) fcc system from a folder outside the checkout."""
    import os
    import subprocess
    import sys

    import yaml

    from capml.cli import ROOT

    (tmp_path / "conf" / "system").mkdir(parents=True)
    (tmp_path / "conf" / "system" / "cuau.yaml").write_text(yaml.safe_dump({
        "name": "cuau", "parent": {"_target_": "ase.build.bulk", "name": "Cu", "crystalstructure": "fcc", "a": 1.0,
                                   "cubic": True},
        "mixed_site": "Cu", "species": ["Cu", "Au"], "lattice_constants": {"Cu": 3.56, "Au": 4.10},
        "supercell": [1, 1, 1]}))
    done = subprocess.run([sys.executable, str(ROOT / "simulate.py"), "--config-dir", str(tmp_path / "conf"),
                           "system=cuau", "stage=lattice", "labels=ase", "workdir=out"], cwd=tmp_path,
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    override = [ln for ln in done.stdout.splitlines() if ln.startswith("system.lattice_constants=")]
    values = dict(item.split(": ") for item in override[0].split("=", 1)[1].strip("{}").split(", "))
    assert float(values["Cu"]) == pytest.approx(relaxed_lattice_constant("Cu", 3.56), rel=2e-3)
    assert float(values["Au"]) == pytest.approx(relaxed_lattice_constant("Au", 4.10), rel=2e-3)
    assert (tmp_path / "out" / "lattice" / "lattice_constants.json").exists()
