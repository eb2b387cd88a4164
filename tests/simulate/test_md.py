"""Batched Langevin MD: canonical temperature statistics against ASE's integrator and the analytic
values, batched MACE forces against the ASE calculator, and bit-identical resume after a kill."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.harmonic import HarmonicCalculator, HarmonicForceField
from ase.io import read, write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.units import fs

from capml.errors import InputError
from capml.phonons import full_force_constants, harmonic_phonons
from capml.simulate.md import CHECKPOINT, MDSettings, MDSystem, read_trajectory, run_md
from capml.simulate.mlip import ase_calculator, batched_model
from capml.structures.prototypes import antiperovskite

from .conftest import HarmonicModel

T_K = 300.0


@pytest.fixture(scope="module")
def copper():
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)  # 32 atoms
    return cu, full_force_constants(harmonic_phonons(cu, EMT(), np.eye(3, dtype=int)))


def test_langevin_temperature_and_fluctuations_match_ase(copper, tmp_path):
    """Same harmonic crystal (EMT Cu force constants) in both: ours batched through torch-sim, ASE's own
    Langevin integrator with ASE's HarmonicCalculator, each against the canonical-ensemble values."""
    cu, fc = copper
    n_copies, n_steps = 8, 5000
    settings = MDSettings(timestep_fs=1.0, friction_per_ps=5.0, n_steps=n_steps, save_every_steps=10, seed=3)
    paths = run_md([MDSystem(f"cu{i}", cu, T_K) for i in range(n_copies)], HarmonicModel(cu.positions, fc, n_copies),
                   tmp_path, settings, progress=False)
    ours = np.concatenate([[f.info["kinetic_temperature_K"] for f in read_trajectory(p, discard_fs=1000)]
                           for p in paths.values()])

    hessian = fc.transpose(0, 2, 1, 3).reshape(3 * len(cu), 3 * len(cu))
    ase_t = []
    for replica in range(n_copies):
        atoms = cu.copy()
        atoms.calc = HarmonicCalculator(HarmonicForceField(cu, hessian))
        MaxwellBoltzmannDistribution(atoms, temperature_K=T_K, rng=np.random.default_rng(replica))
        dyn = Langevin(atoms, 1.0 * fs, temperature_K=T_K, friction=5.0e-3 / fs, fixcm=False,
                       rng=np.random.default_rng(10 + replica))
        series = []
        dyn.attach(lambda: series.append(atoms.get_temperature()), interval=10)
        dyn.run(n_steps)
        ase_t += series[100:]
    ase_t = np.array(ase_t)

    relative_std = np.sqrt(2 / (3 * len(cu)))  # canonical kinetic-temperature fluctuation, 3N degrees of freedom
    for series in (ours, ase_t):
        assert series.mean() == pytest.approx(T_K, rel=0.03)
        assert series.std() / series.mean() == pytest.approx(relative_std, rel=0.12)
    assert ours.mean() == pytest.approx(ase_t.mean(), rel=0.04)
    assert ours.std() == pytest.approx(ase_t.std(), rel=0.12)


def test_batched_mace_forces_match_ase_calculator(mace_model_path):
    cells = [antiperovskite("Ag", "S", "Br", 4.79), antiperovskite("Ag", "S", "I", 4.87).repeat((2, 1, 1)),
             antiperovskite("Ag", "S", "Br", 4.80)]
    rng = np.random.default_rng(0)
    for atoms in cells:
        atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
    import torch_sim as ts

    model = batched_model(mace_model_path, "float64")
    out = model(ts.io.atoms_to_state(cells, model.device, model.dtype))
    calc = ase_calculator(mace_model_path, "float64")
    start = 0
    for i, atoms in enumerate(cells):
        atoms.calc = calc
        np.testing.assert_allclose(out["forces"][start:start + len(atoms)].numpy(), atoms.get_forces(), atol=1e-8)
        assert float(out["energy"][i]) == pytest.approx(atoms.get_potential_energy(), abs=1e-8)
        start += len(atoms)


def _systems():
    return [MDSystem("br_300", antiperovskite("Ag", "S", "Br", 4.79).repeat((2, 1, 1)), 300.0),
            MDSystem("i_600", antiperovskite("Ag", "S", "I", 4.87), 600.0)]


def test_resume_after_kill_continues_bit_for_bit(mace_model_path, tmp_path):
    model = batched_model(mace_model_path, "float64")
    full = MDSettings(n_steps=30, save_every_steps=5, seed=1)
    run_md(_systems(), model, tmp_path / "straight", full, progress=False)

    killed = tmp_path / "killed"
    run_md(_systems(), model, killed, MDSettings(n_steps=15, save_every_steps=5, seed=1), progress=False)
    # a kill after a frame was written but before the checkpoint: that frame must be dropped on resume
    stray = read(killed / "br_300.extxyz", -1)
    stray.info["step"] = 20
    write(killed / "br_300.extxyz", stray, format="extxyz", append=True)
    run_md(_systems(), model, killed, full, progress=False)

    for name in ("br_300", "i_600"):
        a, b = read(tmp_path / "straight" / f"{name}.extxyz", ":"), read(killed / f"{name}.extxyz", ":")
        assert [f.info["step"] for f in a] == [f.info["step"] for f in b] == list(range(0, 31, 5))
        np.testing.assert_array_equal(a[-1].positions, b[-1].positions)
        np.testing.assert_array_equal(a[-1].get_velocities(), b[-1].get_velocities())
    assert (killed / CHECKPOINT).exists()


def test_checkpoint_of_other_systems_is_an_input_error(mace_model_path, tmp_path):
    model = batched_model(mace_model_path, "float64")
    run_md(_systems(), model, tmp_path, MDSettings(n_steps=5, save_every_steps=5), progress=False)
    with pytest.raises(InputError, match="written for systems"):
        run_md(_systems()[:1], model, tmp_path, MDSettings(n_steps=5, save_every_steps=5), progress=False)


def test_npt_changes_the_cell(mace_model_path, tmp_path):
    model = batched_model(mace_model_path, "float64", compute_stress=True)
    settings = MDSettings(n_steps=20, save_every_steps=10, ensemble="npt", pressure_GPa=0.0, barostat_time_fs=100)
    paths = run_md(_systems(), model, tmp_path, settings, progress=False)
    for system in _systems():
        frames = read_trajectory(paths[system.name])
        assert len(frames) == 3
        assert not np.allclose(frames[-1].cell[:], system.atoms.cell[:])


def test_bad_settings_are_input_errors():
    with pytest.raises(InputError, match="md.ensemble='nph'"):
        MDSettings(ensemble="nph")
    with pytest.raises(InputError, match="md.timestep_fs=0"):
        MDSettings(timestep_fs=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batched_model_on_cuda_matches_cpu(mace_model_path):
    import torch_sim as ts

    from capml.structures.system import load_system

    system = load_system("ag3sbri")
    structures = [system.build(system.decorations(k)[0]) for k in (0, 4, 8)]
    for atoms in structures:
        atoms.rattle(0.05, seed=1)
    out = {}
    for device in ("cpu", "cuda"):
        state = ts.io.atoms_to_state(structures, torch.device(device), torch.float64)
        out[device] = {k: v.cpu() for k, v in batched_model(mace_model_path, "float64", device)(state).items()}
    assert torch.allclose(out["cpu"]["energy"], out["cuda"]["energy"], atol=1e-8)
    assert torch.allclose(out["cpu"]["forces"], out["cuda"]["forces"], atol=1e-8)


def test_torn_frame_and_changed_settings_on_resume(mace_model_path, tmp_path):
    """A kill in the middle of a trajectory append leaves half a frame: the resume cuts it and goes on. A rerun with
    another timestep, friction or seed is another run and is refused instead of continuing this one."""
    model = batched_model(mace_model_path, "float64")
    settings = MDSettings(n_steps=10, save_every_steps=5, seed=1)
    run_md(_systems(), model, tmp_path, settings, progress=False)
    path = tmp_path / "br_300.extxyz"
    text = path.read_text()
    path.write_text(text + "".join(text.splitlines(keepends=True)[:3])[:-10])  # a frame's first lines, torn
    assert [f.info["step"] for f in read_trajectory(path)] == [0, 5, 10]  # readers skip the torn tail
    run_md(_systems(), model, tmp_path, MDSettings(n_steps=15, save_every_steps=5, seed=1), progress=False)
    assert [f.info["step"] for f in read(path, ":")] == [0, 5, 10, 15]
    for change, name in [(dict(timestep_fs=2.0), "timestep_fs"), (dict(friction_per_ps=1.0), "friction_per_ps"),
                         (dict(seed=2), "seed")]:
        other = MDSettings(**{"n_steps": 20, "save_every_steps": 5, "seed": 1, **change})
        with pytest.raises(InputError, match=f"md.{name}="):
            run_md(_systems(), model, tmp_path, other, progress=False)
    # the same settings on another potential or in another precision are another run too
    with pytest.raises(InputError, match="model dtype="):
        run_md(_systems(), batched_model(mace_model_path, "float32"), tmp_path,
               MDSettings(n_steps=20, save_every_steps=5, seed=1), progress=False)


@pytest.mark.parametrize("cut", ["mid_line", "whole_lines"])
def test_a_torn_checkpoint_frame_is_written_again_on_resume(mace_model_path, tmp_path, cut):
    """The frame of the checkpoint's own step torn after the checkpoint was written (mid-line: its last number cut
    short, or whole lines gone): the resume cuts it and writes it again from the checkpoint, so the trajectory has
    every frame and equals an uninterrupted one, instead of missing that step."""
    model = batched_model(mace_model_path, "float64")
    full = MDSettings(n_steps=15, save_every_steps=5, seed=1)
    run_md(_systems(), model, tmp_path / "straight", full, progress=False)
    torn = tmp_path / "torn"
    run_md(_systems(), model, torn, MDSettings(n_steps=10, save_every_steps=5, seed=1), progress=False)
    path = torn / "br_300.extxyz"
    text = path.read_text()
    path.write_text(text[:-7] if cut == "mid_line" else "".join(text.splitlines(keepends=True)[:-2]))
    assert [f.info["step"] for f in read_trajectory(path)] == [0, 5]
    run_md(_systems(), model, torn, full, progress=False)
    for name in ("br_300", "i_600"):
        a, b = read(tmp_path / "straight" / f"{name}.extxyz", ":"), read(torn / f"{name}.extxyz", ":")
        assert [f.info["step"] for f in b] == [f.info["step"] for f in a] == [0, 5, 10, 15]
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x.positions, y.positions)
            np.testing.assert_array_equal(x.get_velocities(), y.get_velocities())


@pytest.mark.slow
def test_md_killed_with_sigkill_resumes_bit_for_bit(mace_model_path, tmp_path):
    """A real kill -9 of a process running MD, then the same run again: the trajectories equal an uninterrupted
    run's frame for frame."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = tmp_path / "md.py"
    script.write_text(f"""
import sys
from capml.simulate.md import MDSettings, MDSystem, run_md
from capml.simulate.mlip import batched_model
from capml.structures.prototypes import antiperovskite
systems = [MDSystem("br_300", antiperovskite("Ag", "S", "Br", 4.79).repeat((2, 1, 1)), 300.0),
           MDSystem("i_600", antiperovskite("Ag", "S", "I", 4.87), 600.0)]
run_md(systems, batched_model({str(mace_model_path)!r}, "float64"), sys.argv[1],
       MDSettings(n_steps=60, save_every_steps=2, seed=3), progress=False)
""")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    assert subprocess.run([sys.executable, str(script), str(tmp_path / "straight")], env=env).returncode == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(killed)], env=env)
    path = killed / "i_600.extxyz"
    deadline = time.time() + 120
    while time.time() < deadline and (not path.exists() or path.read_text().count("Lattice=") < 8):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 8 <= path.read_text().count("Lattice=") < 31
    assert subprocess.run([sys.executable, str(script), str(killed)], env=env).returncode == 0
    for name in ("br_300", "i_600"):
        a, b = read(tmp_path / "straight" / f"{name}.extxyz", ":"), read(killed / f"{name}.extxyz", ":")
        assert [f.info["step"] for f in a] == [f.info["step"] for f in b] == list(range(0, 61, 2))
        for fa, fb in zip(a, b):
            np.testing.assert_array_equal(fa.positions, fb.positions)


def test_system_batches_split_by_atoms_on_a_cpu_and_not_on_a_gpu():
    from capml.simulate.md import cpu_batch_atoms, system_batches

    assert cpu_batch_atoms(1) == 320 and cpu_batch_atoms(2) == 1600  # the measured optima (bench/README.md)
    cell = antiperovskite("Ag", "S", "Br", 4.8).repeat(2)  # 40 atoms
    systems = [MDSystem(f"s{k}", cell, 300.0) for k in range(168)]
    groups = system_batches(systems, "auto", "cpu")
    limit = cpu_batch_atoms()
    assert [s.name for g in groups for s in g] == [s.name for s in systems]  # every system once, in order
    assert max(40 * len(g) for g in groups) <= limit and len(groups) == -(-168 * 40 // limit)
    assert max(map(len, groups)) - min(map(len, groups)) <= len(groups)  # balanced, not 40+40+40+40+8
    assert [len(g) for g in system_batches(systems, 1600, "cpu")] == [34, 34, 34, 34, 32]  # the map's groups
    assert len(system_batches(systems, "auto", "cuda:0")) == 1 and len(system_batches(systems, None, "cpu")) == 1
    assert [len(g) for g in system_batches(systems[:5], 80, "cpu")] == [2, 2, 1]
    big = antiperovskite("Ag", "S", "Br", 4.8).repeat(3)  # 135 atoms, above a 120-atom limit
    mixed = [MDSystem(f"m{k}", big if k % 3 == 0 else cell, 300.0) for k in range(6)]
    assert [[s.name for s in g] for g in system_batches(mixed, 120, "cpu")] == [["m0"], ["m1", "m2"], ["m3"],
                                                                                ["m4", "m5"]]  # not six of one
    with pytest.raises(InputError, match="md.max_atoms_per_batch=0"):
        MDSettings(max_atoms_per_batch=0)


def test_batches_run_one_after_the_other_with_their_own_noise_and_resume(mace_model_path, tmp_path):
    """Four systems in two batches of two: the first batch is the run of its two systems alone (same seed), two
    copies of one start in different batches get different noise and start velocities, a run stopped half-way
    resumes every batch to the same numbers, and another grouping or seed in the same folder is refused."""
    model = batched_model(mace_model_path, "float64")
    systems = _systems() + [MDSystem(f"{s.name}_copy", s.atoms, s.temperature_K) for s in _systems()]
    atoms = sum(len(s.atoms) for s in systems[:2])
    settings = MDSettings(n_steps=20, save_every_steps=5, seed=1, max_atoms_per_batch=atoms)
    paths = run_md(systems, model, tmp_path / "batched", settings, progress=False)
    assert sorted(p.name for p in (tmp_path / "batched").glob("md_state*.pt")) == ["md_state.0of2.pt",
                                                                                 "md_state.1of2.pt"]
    alone = run_md(_systems(), model, tmp_path / "alone", MDSettings(n_steps=20, save_every_steps=5, seed=1,
                                                                       max_atoms_per_batch=None), progress=False)
    last = {name: read_trajectory(path)[-1] for name, path in paths.items()}
    for s in _systems():
        np.testing.assert_array_equal(last[s.name].positions, read_trajectory(alone[s.name])[-1].positions)
        assert not np.allclose(last[s.name].positions, last[f"{s.name}_copy"].positions)
        assert not np.allclose(read_trajectory(paths[s.name])[0].get_velocities(),
                               read_trajectory(paths[f"{s.name}_copy"])[0].get_velocities())

    killed = tmp_path / "killed"  # stopped half-way (both batches at step 10), then resumed to 20
    run_md(systems, model, killed, MDSettings(n_steps=10, save_every_steps=5, seed=1, max_atoms_per_batch=atoms),
           progress=False)
    again = run_md(systems, model, killed, settings, progress=False)
    for name, path in again.items():
        np.testing.assert_array_equal(read_trajectory(path)[-1].positions, last[name].positions)
    with pytest.raises(InputError, match=r"another grouping .*md.max_atoms_per_batch=None"):
        run_md(systems, model, killed, MDSettings(n_steps=20, save_every_steps=5, seed=1, max_atoms_per_batch=None),
               progress=False)
    with pytest.raises(InputError, match=r"md.seed=2 \(the run has 1\)"):
        run_md(systems, model, killed, MDSettings(n_steps=30, save_every_steps=5, seed=2, max_atoms_per_batch=atoms),
               progress=False)
