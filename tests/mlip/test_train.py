"""mace_run_train driven from the mlip config: flags, splits, from-scratch training and fine-tuning."""

import json
from pathlib import Path

import numpy as np
import pytest

from capml.errors import InputError
from capml.io.contract import read_dataset, write_dataset
from capml.mlip.data import write_splits
from capml.mlip.train import mace_arguments, run

from .mlip_data import emt_frames, mlip_config


def test_splits_are_grouped_95_5_with_held_out_test(tmp_path, emt_dataset):
    files = write_splits(emt_dataset, tmp_path, val_fraction=0.05, test_fraction=0.1, seed=3)
    groups = {s: {a.info["config_id"] for a in read_dataset(files.path(s))} for s in ("train", "val", "test")}
    assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"])
    assert not (groups["val"] & groups["test"])
    assert sum(files.counts.values()) == len(read_dataset(emt_dataset))
    assert files.counts["train"] > files.counts["test"] >= files.counts["val"] >= 1
    assert json.loads((tmp_path / "splits.json").read_text())["counts"] == files.counts
    first = write_splits(emt_dataset, tmp_path / "first", 0.2, 0.25, max_frames=16)
    assert sum(first.counts.values()) == 16
    ids = {a.info["structure_id"] for s in ("train", "val", "test") for a in read_dataset(first.path(s))}
    assert ids == {a.info["structure_id"] for a in read_dataset(emt_dataset)[:16]}


def test_extra_train_frames_only_join_the_training_split(tmp_path, emt_dataset):
    extra = emt_frames(n_configs=3, per_config=2, seed=9)
    for atoms in extra:
        atoms.info["structure_id"] = "md_" + atoms.info["structure_id"]
    write_dataset(tmp_path / "md.extxyz", extra)
    plain = write_splits(emt_dataset, tmp_path / "plain", 0.2, 0.25, seed=1)
    grown = write_splits(emt_dataset, tmp_path / "grown", 0.2, 0.25, seed=1, extra_train=[tmp_path / "md.extxyz"])
    ids = {f: {s: [a.info["structure_id"] for a in read_dataset(files.path(s))] for s in ("train", "val", "test")}
           for f, files in (("plain", plain), ("grown", grown))}
    assert ids["grown"]["val"] == ids["plain"]["val"] and ids["grown"]["test"] == ids["plain"]["test"]
    assert ids["grown"]["train"] == ids["plain"]["train"] + [a.info["structure_id"] for a in extra]
    record = json.loads((tmp_path / "grown" / "splits.json").read_text())
    assert record["extra_train"] == {str(tmp_path / "md.extxyz"): 6}
    with pytest.raises(InputError, match="already in"):  # the same structures twice
        write_splits(emt_dataset, tmp_path / "twice", extra_train=[emt_dataset])


def test_few_groups_still_give_nonempty_splits_or_a_clear_error(tmp_path):
    write_dataset(tmp_path / "five.extxyz", emt_frames(n_configs=5, per_config=2))
    files = write_splits(tmp_path / "five.extxyz", tmp_path / "five")  # 5 % of 10 frames rounds to nothing
    assert files.counts["val"] == 2 and files.counts["test"] >= 2 and sum(files.counts.values()) == 10

    frames = emt_frames(n_configs=2, per_config=2)
    write_dataset(tmp_path / "two.extxyz", frames)
    with pytest.raises(InputError, match="too few for train, val and test"):
        write_splits(tmp_path / "two.extxyz", tmp_path / "out")


def test_a_small_set_of_unrelated_structures_splits_frame_by_frame(tmp_path):
    # two decorations only: by config_id there are too few groups; by structure_id every frame is its own group
    write_dataset(tmp_path / "two.extxyz", emt_frames(n_configs=2, per_config=5))
    files = write_splits(tmp_path / "two.extxyz", tmp_path / "out", 0.2, 0.2, group_key="structure_id")
    assert files.counts == {"train": 6, "val": 2, "test": 2}
    assert json.loads((tmp_path / "out" / "splits.json").read_text())["group_key"] == "structure_id"
    with pytest.raises(InputError, match="pinned splits keep config_id groups"):
        write_splits(tmp_path / "two.extxyz", tmp_path / "pinned", 0.2, 0.2, group_key="structure_id",
                     pinned=tmp_path / "out" / "splits.json")


def test_held_out_labels_of_another_setting_are_refused_before_anything_is_written(tmp_path, tiny_base):
    from capml.io.contract import DatasetSettings

    gamma = DatasetSettings({"REF": {"code": "gpaw", "kpts": {"size": [1, 1, 1]}}})
    mesh = DatasetSettings({"REF": {"code": "gpaw", "kpts": {"size": [2, 2, 2]}}})
    write_dataset(tmp_path / "mesh.extxyz", emt_frames(n_configs=4, per_config=2), mesh)
    write_dataset(tmp_path / "gamma.extxyz", emt_frames(seed=3, n_configs=2, per_config=1), gamma)
    cfg = mlip_config(dataset=str(tmp_path / "mesh.extxyz"), out_dir=str(tmp_path / "ft"),
                      foundation_model=tiny_base["model"],
                      **{"evaluate.phonons": None, "evaluate.heldout": [str(tmp_path / "gamma.extxyz")]})
    with pytest.raises(InputError, match="gamma.extxyz .against .*mesh.extxyz.: label settings for fidelity 'REF' differ"):
        run(cfg)
    assert not (tmp_path / "ft").exists()


def test_missing_stress_is_input_error(tmp_path):
    frames = emt_frames(n_configs=4, per_config=2)
    for atoms in frames:
        del atoms.info["REF_stress"]
    write_dataset(tmp_path / "nostress.extxyz", frames)
    with pytest.raises(InputError, match="REF_stress"):
        write_splits(tmp_path / "nostress.extxyz", tmp_path / "out")


def test_mace_flags_from_config(tmp_path, emt_dataset, tiny_base):
    files = write_splits(emt_dataset, tmp_path, 0.2, 0.25)
    m = mlip_config(foundation_model=tiny_base["model"], stress_weight=2.5).mlip
    argv = mace_arguments(m, files, tmp_path, tiny_base["model"])
    for flag in ("--loss=stress", "--stress_weight=2.5", "--compute_stress=True", "--energy_key=REF_energy",
                 "--forces_key=REF_forces", "--stress_key=REF_stress", f"--foundation_model={tiny_base['model']}",
                 "--multiheads_finetuning=False", "--E0s=estimated", "--ema", "--restart_latest"):
        assert flag in argv
    # a foundation model brings its own cutoff and architecture
    assert not any(a.startswith(("--r_max", "--num_channels")) for a in argv)

    def scratch(**overrides):
        return mace_arguments(mlip_config(E0s="average", **overrides).mlip, files, tmp_path, None)

    assert "--r_max=5.0" in scratch() and "--num_channels=32" in scratch()
    with pytest.raises(InputError, match="drops stress"):
        scratch(loss="weighted")
    assert "--loss=weighted" in scratch(loss="weighted", stress_weight=0)
    assert "--ema" not in scratch(ema=False)
    with pytest.raises(InputError, match="not a mace_run_train flag"):
        scratch(extra_args={"no_such_flag": 1})
    with pytest.raises(InputError, match="own mlip keys"):
        scratch(extra_args={"lr": 1})
    with pytest.raises(InputError, match="needs a foundation model"):
        mace_arguments(mlip_config(E0s="estimated").mlip, files, tmp_path, None)


def test_bad_foundation_is_input_error(tmp_path, emt_dataset):
    cfg = mlip_config(dataset=str(emt_dataset), out_dir=str(tmp_path), foundation_model=str(tmp_path / "none.model"))
    with pytest.raises(InputError, match="neither a model file nor a mace-mp foundation name"):
        run(cfg)


def test_base_model_trained_from_scratch(tiny_base):
    run_dir = Path(tiny_base["model"]).parents[1]
    log_text = (run_dir / "mace" / "mace_stdout.log").read_text()
    assert "WeightedEnergyForcesStressLoss" in log_text  # stress reaches the loss
    assert "Computing average Atomic Energies using least squares" in log_text
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) == {"trained"}
    forces = metrics["test"]["trained"]["forces"]
    assert np.isfinite(forces["mae"]) and forces["r2"] > 0.3  # learnt something in 20 tiny epochs
    assert (run_dir / "parity.png").stat().st_size > 0


def test_fine_tune_from_local_model_improves_on_new_fidelity(tmp_path, tiny_base):
    """The base saw EMT; fine-tuning data is EMT scaled by 1.3 (another 'functional'): the fine-tuned model must
    beat its starting point on the held-out split, and its E0s start from the foundation's."""
    write_dataset(tmp_path / "stiff.extxyz", emt_frames(seed=7, force_scale=1.3))
    heldout = emt_frames(seed=11, n_configs=3, force_scale=1.3)  # other structures, in no split
    write_dataset(tmp_path / "heldout.extxyz", heldout)
    cfg = mlip_config(dataset=str(tmp_path / "stiff.extxyz"), out_dir=str(tmp_path / "ft"),
                      foundation_model=tiny_base["model"], epochs=10, lr=0.01, ema=False,
                      test_fraction=0.25, val_fraction=0.2,
                      **{"evaluate.phonons": None, "evaluate.heldout": [str(tmp_path / "heldout.extxyz")]})
    summary = run(cfg)
    test = summary["metrics"]["test"]
    assert set(test) == {"foundation", "trained"}
    assert test["trained"]["forces"]["mae"] < test["foundation"]["forces"]["mae"]
    # the held-out set is scored like the test split: its force MAE recomputed here with the model's calculator
    from capml.simulate.mlip import ase_calculator

    scored = summary["metrics"]["heldout"][str(tmp_path / "heldout.extxyz")]
    assert scored["n_frames"] == len(heldout)
    calc = ase_calculator(summary["model"], "float64", "cpu")
    errors = []
    for atoms in heldout:
        copy = atoms.copy()
        copy.calc = calc
        errors.append(np.abs(copy.get_forces() - atoms.arrays["REF_forces"]))
    mae_meV_A = 1000 * np.concatenate(errors).mean()
    assert scored["models"]["trained"]["forces"]["mae"] == pytest.approx(mae_meV_A, rel=1e-5)
    log_text = (tmp_path / "ft" / "mace" / "mace_stdout.log").read_text()
    assert "Estimating E0s from foundation model" in log_text
    assert "WeightedEnergyForcesStressLoss" in log_text
    recorded = json.loads((tmp_path / "ft" / "summary.json").read_text())
    assert Path(recorded["model"]).is_file() and recorded["foundation_model"] == tiny_base["model"]


def test_pinned_groups_keep_their_split_as_the_dataset_grows(tmp_path):
    write_dataset(tmp_path / "small.extxyz", emt_frames(n_configs=12))
    write_splits(tmp_path / "small.extxyz", tmp_path / "first", 0.2, 0.25, seed=0)
    grown = emt_frames(n_configs=30)  # same first 12 config_ids (same seed), 18 new ones
    write_dataset(tmp_path / "grown.extxyz", grown)
    second = write_splits(tmp_path / "grown.extxyz", tmp_path / "second", 0.2, 0.25, seed=5,
                          pinned=tmp_path / "first" / "splits.json")
    before = json.loads((tmp_path / "first" / "splits.json").read_text())["config_ids"]
    after = json.loads((tmp_path / "second" / "splits.json").read_text())["config_ids"]
    for name in ("train", "val", "test"):
        assert set(before[name]) <= set(after[name])
    assert sum(second.counts.values()) == len(grown)
    with pytest.raises(InputError, match="splits.json"):
        write_splits(tmp_path / "grown.extxyz", tmp_path / "third", pinned=tmp_path / "small.extxyz")


def test_checkpoints_kept_for_same_inputs_dropped_for_changed(tmp_path):
    from capml.mlip.train import prepare_work_dir

    prepare_work_dir(tmp_path, "a")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "mace_run-0_epoch-3.pt").write_text("x")
    prepare_work_dir(tmp_path, "a")
    assert (tmp_path / "checkpoints" / "mace_run-0_epoch-3.pt").exists()
    prepare_work_dir(tmp_path, "b")
    assert not (tmp_path / "checkpoints").exists()


def start_and_wait_for_epoch(cmd, root: Path, env: dict, log: Path, line: str, timeout_s: float = 300.0):
    """Start ``cmd`` (train.py) and return its process once mace's log shows ``line`` (the moment to kill it)."""
    import subprocess
    import time

    process = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout_s
    while time.time() < deadline and process.poll() is None:
        if log.exists() and line in log.read_text(errors="ignore"):
            break
        time.sleep(0.2)
    assert process.poll() is None, "training ended before the kill"
    return process


@pytest.mark.slow
def test_killed_run_takes_the_mace_trainer_with_it_and_reruns(tmp_path, emt_dataset):
    """kill -9 `train.py experiment=mlip_base` while mace trains: the mace child ends with it (no orphan training beside the
    rerun), and the same command then finishes (mace resumes from its latest checkpoint)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "mlip"
    cmd = [sys.executable, "train.py", "experiment=mlip_base", f"mlip.dataset={emt_dataset}", f"mlip.out_dir={out}",
           "mlip.epochs=40", "mlip.export_model=null", "mlip.evaluate.phonons=null", "mlip.val_fraction=0.2",
           "mlip.test_fraction=0.25", "mlip.architecture.num_channels=8",
           f"hydra.run.dir={tmp_path / 'run'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    parent = start_and_wait_for_epoch(cmd, root, env, out / "mace" / "mace_stdout.log", "Epoch 1")

    def children():
        found = []
        for pid in os.listdir("/proc"):
            try:
                line = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "mace.cli.run_train" in line and str(out) in line:
                found.append(pid)
        return found

    assert children(), "no mace child found"
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 20
    while children() and time.time() < deadline:
        time.sleep(0.2)
    assert not children(), "the mace trainer outlived train.py"
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert Path(summary["model"]).is_file() and "trained" in summary["metrics"]["test"]


@pytest.mark.slow
def test_killed_run_with_resume_off_ends_with_the_uninterrupted_numbers(tmp_path, emt_dataset):
    """mlip.resume=false: a rerun after kill -9 starts over and its test metrics equal those of a run that was
    never stopped (mace is seeded; its own resume cannot give that, see conf/mlip/default.yaml)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[2]

    def command(out):
        return [sys.executable, "train.py", "experiment=mlip_base", f"mlip.dataset={emt_dataset}",
                f"mlip.out_dir={out}", "mlip.epochs=20", "mlip.export_model=null", "mlip.evaluate.phonons=null",
                "mlip.val_fraction=0.2", "mlip.test_fraction=0.25", "mlip.architecture.num_channels=8",
                "mlip.resume=false", f"hydra.run.dir={out}_run"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = subprocess.run(command(tmp_path / "straight"), cwd=root, env=env, capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = tmp_path / "killed"
    parent = start_and_wait_for_epoch(command(killed), root, env, killed / "mace" / "mace_stdout.log", "Epoch 2")
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    time.sleep(2)
    rerun = subprocess.run(command(killed), cwd=root, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    a = json.loads((tmp_path / "straight" / "summary.json").read_text())["metrics"]
    b = json.loads((killed / "summary.json").read_text())["metrics"]
    assert a == b
