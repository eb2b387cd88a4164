"""Mean-squared displacement per species: an atom moving at constant velocity through the periodic boundary
(wrapped positions) against the analytic displacement, with and without the centre of mass."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.io import write

from capml.simulate.diffusion import main, mean_squared_displacement


def drifting_pair(n_frames: int = 40, step_A: float = 0.4) -> list[Atoms]:
    frames = []
    for i in range(n_frames):
        atoms = Atoms("AgS", positions=[[0.5 + step_A * i, 1.0, 1.0], [2.5, 2.5, 2.5]], cell=[5.0, 5.0, 5.0], pbc=True)
        atoms.wrap()  # as an MD file stores them: Ag crosses the cell three times
        atoms.info["time_fs"] = 50.0 * i
        frames.append(atoms)
    return frames


def test_msd_unwraps_through_the_boundary_and_removes_the_centre_of_mass():
    frames = drifting_pair()
    travelled = 0.4 * np.arange(len(frames))
    raw = mean_squared_displacement(frames, remove_com=False)
    np.testing.assert_allclose(raw["msd_Ag_A2"], travelled**2, atol=1e-9)
    np.testing.assert_allclose(raw["msd_S_A2"], 0.0, atol=1e-12)
    np.testing.assert_allclose(raw["time_ps"], 0.05 * np.arange(len(frames)))

    m_ag, m_s = frames[0].get_masses()
    centred = mean_squared_displacement(frames)
    np.testing.assert_allclose(centred["msd_Ag_A2"], (travelled * m_s / (m_ag + m_s)) ** 2, atol=1e-9)
    np.testing.assert_allclose(centred["msd_S_A2"], (travelled * m_ag / (m_ag + m_s)) ** 2, atol=1e-9)


def test_command_line_prints_the_msd_at_the_asked_times_and_refuses_a_missing_file(tmp_path, capsys):
    write(tmp_path / "pair_T300.extxyz", drifting_pair())
    assert main([str(tmp_path / "pair_T300.extxyz"), "--times-ps", "1.0"]) == 0
    out = capsys.readouterr().out
    assert "msd_Ag_A2" in out and "pair_T300" in out
    assert main([str(tmp_path / "missing_T300.extxyz"), "--times-ps", "1.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing_T300.extxyz" in err[0]


def test_one_frame_is_refused():
    from capml.errors import InputError

    with pytest.raises(InputError, match="two frames"):
        mean_squared_displacement(drifting_pair(1))
