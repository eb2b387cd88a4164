"""The programs from outside the checkout: the console scripts, and a user's own config folder (--config-dir)
adding a material's system config that capml's conf/ does not have."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from ase.io import read

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(cmd, cwd):
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return done.returncode, done.stdout, [ln for ln in done.stderr.splitlines() if ln.strip()]


def test_a_system_config_from_the_users_folder(tmp_path):
    """A copy of the bundled system with a 2x2x1 cell and other lattice constants, in a folder outside the checkout,
    run from another working directory through --config-dir."""
    user = tmp_path / "my_configs" / "system"
    user.mkdir(parents=True)
    config = yaml.safe_load((ROOT / "conf" / "system" / "ag3sbri.yaml").read_text())
    config.update(name="mine", supercell=[2, 2, 1], lattice_constants={"Br": 4.70, "I": 4.95})
    (user / "mine.yaml").write_text(yaml.safe_dump(config))
    work = tmp_path / "elsewhere"
    work.mkdir()
    code, stdout, err = run([sys.executable, str(ROOT / "simulate.py"), "--config-dir", str(tmp_path / "my_configs"),
                             "system=mine", "stage=sample", "structures.compositions=[0,0.5]",
                             "structures.temperatures_K=[]", "structures.phonon_samples=0",
                             "structures.uniform_samples=0", "structures.equilibrium_samples=1", "workdir=out"], work)
    assert code == 0, err[-5:]
    frames = read(work / "out" / "structures.extxyz", ":")
    assert [len(a) for a in frames] == [20, 20]
    np.testing.assert_allclose(frames[0].cell.lengths(), [2 * 4.95, 2 * 4.95, 4.95])  # x = 0: Ag3SI
    assert (work / "out" / "simulate.log").exists()
    # without the folder the name is unknown: one line
    code, _, err = run([sys.executable, str(ROOT / "simulate.py"), "system=mine", "stage=sample"], work)
    assert code == 2 and len(err) == 1 and "system/mine" in err[0]


def test_console_scripts(tmp_path):
    for name in ("capml-simulate", "capml-train", "capml-import"):
        assert shutil.which(name, path=str(BIN)), f"{name} is not installed (pip install -e .)"
    root = tmp_path / "runs"
    shutil.copytree(ROOT / "tests" / "fixtures" / "vasp" / "relax", root / "relax")
    code, stdout, err = run([str(BIN / "capml-import"), f"import.root={root}", "workdir=imported"], tmp_path)
    assert code == 0, err[-5:]
    assert read(tmp_path / "imported" / "dataset.extxyz", ":")[0].info["structure_id"] == "relax/vasprun.xml@10"
    code, _, err = run([str(BIN / "capml-train"), "trainer.max_epochs=abc"], tmp_path)
    assert code == 2 and err == ["error: trainer.max_epochs=abc: expected a number (the default is 300)"]


def test_importing_capml_leaves_the_matplotlib_backend_alone():
    """A notebook's backend stays what it was: no module of capml calls matplotlib.use (plots go through
    matplotlib.figure.Figure)."""
    code = ("import matplotlib; matplotlib.use('svg'); import importlib, pkgutil, capml\n"
            "for m in pkgutil.walk_packages(capml.__path__, 'capml.'):\n"
            "    importlib.import_module(m.name)\n"
            "print(matplotlib.get_backend())")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "svg"
