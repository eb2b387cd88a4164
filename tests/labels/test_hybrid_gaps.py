"""tools/hybrid_gaps.py: hybrid gaps of the static cells in their primitive cell, non- and self-consistent."""

from __future__ import annotations

import csv
import sys

import numpy as np
import pytest
from ase.build import bulk
from ase.io import read, write

from capml.cli import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import hybrid_gaps  # noqa: E402


def test_the_primitive_cell_of_a_static_supercell_is_its_5_atom_cell():
    """Counted another way: the bundled static 40-atom cell is a 2x2x2 repeat of the antiperovskite, so its
    primitive cell has 1/8 of its atoms and volume and the same composition."""
    static = read(ROOT / "data" / "ag3sbri" / "static_cells.extxyz", 0)
    cell = hybrid_gaps.primitive(static)
    assert len(cell) == 5 and cell.get_volume() == pytest.approx(static.get_volume() / 8, rel=1e-6)
    assert sorted(cell.get_chemical_symbols() * 8) == sorted(static.get_chemical_symbols())


def test_bad_runs_and_ids_are_refused_with_one_line(tmp_path, capsys):
    path = tmp_path / "cells.extxyz"
    si = bulk("Si", "diamond", a=5.43)
    si.info["structure_id"] = "si"
    write(path, si)
    assert hybrid_gaps.main([str(path), str(tmp_path / "out.csv"), "--ids", "si", "--run", "k=2:scf:HSE06"]) == 2
    assert "expected k=<n>:<nsc|sc>:<hybrid>" in capsys.readouterr().err
    assert hybrid_gaps.main([str(path), str(tmp_path / "out.csv"), "--ids", "ge", "--run", "k=2:sc:HSE06"]) == 2
    assert "no structure_id ['ge']" in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.slow
def test_self_consistency_barely_moves_the_hybrid_gap_of_silicon_and_a_rerun_does_nothing(tmp_path):
    """Si is the textbook case where HSE06 on a PBE(sol) ground state is already nearly self-consistent (1.73 eV
    either way at these low settings): the two routes of the tool agree, and a rerun computes nothing."""
    path, out = tmp_path / "si.extxyz", tmp_path / "gaps.csv"
    si = bulk("Si", "diamond", a=5.43)
    si.info["structure_id"] = "si"
    write(path, si)
    args = [str(path), str(out), "--ids", "si", "--run", "k=2:nsc:HSE06", "k=2:sc:HSE06", "--ecut", "200"]
    assert hybrid_gaps.main(args) == 0
    rows = {r["scf"]: r for r in csv.DictReader(out.open())}
    nsc, sc = float(rows["nsc"]["gap_hybrid_eV"]), float(rows["sc"]["gap_hybrid_eV"])
    assert abs(sc - nsc) < 0.05 and sc > float(rows["nsc"]["gap_pbesol_eV"]) + 0.8
    assert int(rows["sc"]["iterations"]) > 3 and np.isnan(float(rows["sc"]["gap_pbesol_eV"]))
    before = out.read_text()
    assert hybrid_gaps.main(args) == 0 and out.read_text() == before
