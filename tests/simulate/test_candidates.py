"""Label inputs aimed at the MLIP's relaxations (tools/relaxation_candidates.py): the relaxation path, strained
Vegard cells and the unrelaxed decoration of a relaxed structure, checked against geometry computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from capml.errors import InputError
from capml.simulate.active_learning import path_label_inputs, strained_label_inputs
from capml.structures.system import load_system


@pytest.fixture(scope="module")
def system():
    return load_system("cspbbri")


def _relaxed_like(system, seed=0):
    """A decorated x = 1/2 cell, sheared, swollen and displaced as the MLIP left it (with one atom across the
    periodic boundary)."""
    deco = system.decorations(12, max_enumerate=0, n_random=1, seed=seed)[0]
    start = system.build(deco)
    start.info["x"] = 0.5
    relaxed = start.copy()
    strain = np.eye(3) * 1.1 + np.array([[0, 0.05, 0], [0, 0, 0], [0, 0, 0]])
    relaxed.set_cell(np.asarray(start.cell) @ strain, scale_atoms=True)
    rng = np.random.default_rng(seed)
    relaxed.positions += rng.normal(0, 0.1, relaxed.positions.shape)
    relaxed.positions[0] -= 0.3 * relaxed.cell[0] / np.linalg.norm(relaxed.cell[0])  # across the boundary
    relaxed.wrap()
    return start, relaxed


def test_unrelaxed_recovers_the_vegard_decoration(system):
    start, relaxed = _relaxed_like(system)
    back = system.unrelaxed(relaxed)
    assert back.get_chemical_symbols() == start.get_chemical_symbols()
    np.testing.assert_allclose(back.positions, start.positions, atol=1e-10)
    a_vegard = 2 * (5.9783 + 6.3762) / 2  # conf/system/cspbbri.yaml, 2x2x2 cells
    assert back.get_volume() == pytest.approx(a_vegard ** 3, rel=1e-10)
    wrong = relaxed.copy()
    wrong.positions[[0, 1]] = wrong.positions[[1, 0]]
    wrong.numbers[[0, 1]] = wrong.numbers[[1, 0]]
    if list(wrong.numbers) != list(relaxed.numbers):
        with pytest.raises(InputError, match="supercell's order"):
            system.unrelaxed(wrong)


def test_path_points_lie_between_start_and_relaxed_by_minimum_image(system):
    start, relaxed = _relaxed_like(system)
    start_vegard = system.unrelaxed(relaxed)
    half, = path_label_inputs(start_vegard, relaxed, [0.5], prefix="p_")
    np.testing.assert_allclose(half.cell, (np.asarray(start.cell) + np.asarray(relaxed.cell)) / 2, atol=1e-12)
    # every atom moved half its (shortest) displacement: distances computed in fractional space by hand
    s0, s1, sh = (a.get_scaled_positions() for a in (start_vegard, relaxed, half))
    d_full = (s1 - s0 + 0.5) % 1 - 0.5
    d_half = (sh - s0 + 0.5) % 1 - 0.5
    np.testing.assert_allclose(d_half, d_full / 2, atol=1e-10)
    assert np.abs(d_full).max() < 0.1  # the atom across the boundary took the short way
    assert half.info["structure_id"] == f"p_path0.50_{relaxed.info['config_id']}"
    assert half.info["config_id"] == relaxed.info["config_id"]  # one split group with its relaxed structure
    assert half.info["sampling"] == "path"
    with pytest.raises(InputError, match="path fraction 1"):
        path_label_inputs(start_vegard, relaxed, [1.0])


def test_strained_cells_have_the_volume_of_their_strain(system):
    start, _ = _relaxed_like(system)
    frames = strained_label_inputs(start, [-3, 0, 6], rattle_A=0.05, seed=1, prefix="s_")
    for frame, strain in zip(frames, [-3, 0, 6]):
        assert frame.get_volume() == pytest.approx(start.get_volume() * (1 + strain / 100) ** 3, rel=1e-12)
        shift = frame.positions - start.positions * (1 + strain / 100)
        assert 0 < np.abs(shift).max() <= 0.05
        assert frame.info["config_id"] == f"s_{start.info['config_id']}"
        assert frame.info["x"] == 0.5 and frame.info["sampling"] == "strained"
    assert len({f.info["structure_id"] for f in frames}) == 3
