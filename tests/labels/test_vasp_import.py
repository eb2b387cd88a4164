"""`simulate.py stage=import_vasp` on folders of real VASP outputs (tests/fixtures/vasp, README.md there): the
dataset it writes, what it skips and why, the settings check, resume, and that both trainers take the result."""

import json
import shutil
from pathlib import Path

import pytest

from tests.cli_runner import run_cli

from capml.io.contract import read_dataset, read_settings

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "vasp"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def run(script, *args):
    done = run_cli(script, *args)  # a fresh process, forked after the imports
    return done.returncode, done.stdout, [line for line in done.stderr.splitlines() if line.strip()]


def folder(tmp_path, *cases) -> Path:
    root = tmp_path / "runs"
    for case in cases:
        shutil.copytree(FIXTURES / case, root / case)
    return root


def test_folder_of_mixed_runs(tmp_path):
    """Ten optB88-vdW single points (MoS2 bilayers) beside runs of other functionals and a truncated file: the
    ten make the dataset; the rest is listed with the reason."""
    root = folder(tmp_path, "mos2_shifts", "spin", "hse_bands", "relax_spin_xe", "truncated")
    out = tmp_path / "out"
    code, stdout, err = run("simulate.py", "stage=import_vasp", f"import.root={root}", f"workdir={out}",
                            "import.energy_fidelity=optb88_vdw")
    assert code == 0, err[-5:]
    frames = read_dataset(out / "dataset.extxyz", gaps=["optb88_vdw"])
    expected = EXPECTED["mos2_shifts"]["runs"]
    assert len(frames) == len(expected) == 10
    for atoms in frames:
        run_name = atoms.info["structure_id"].split("/")[1]
        assert atoms.info["structure_id"] == f"mos2_shifts/{run_name}/vasprun.xml@0"
        assert atoms.info["config_id"] == f"mos2_shifts/{run_name}/vasprun.xml"
        assert atoms.info["REF_energy"] == pytest.approx(expected[run_name]["final_energy_eV"], abs=1e-7)
        assert atoms.info["gap_optb88_vdw"] == pytest.approx(expected[run_name]["gap_eV"], abs=1e-4)
    settings = read_settings(out / "dataset.extxyz").fidelities
    assert settings["REF"]["fidelity"] == "optb88_vdw"
    assert settings["optb88_vdw"]["encut_eV"] == 500.0
    assert settings["optb88_vdw"]["kpoints"]["mesh"] == [13, 13, 1]
    assert set(settings["optb88_vdw"]["potcars"]) == {"Mo", "S"}
    summary = json.loads((out / "dataset.import.json").read_text())
    assert summary["files_found"] == 14 and summary["files_imported"] == 10 and summary["frames"] == 10
    reasons = {s["file"]: s["reason"] for s in summary["skipped_files"]}
    assert "truncated file" in reasons["truncated/vasprun.xml"]
    assert set(reasons) == {"truncated/vasprun.xml", "spin/vasprun.xml", "hse_bands/OUTCAR",
                            "relax_spin_xe/vasprun.xml"}
    frame_reasons = {s["structure_id"]: s["reason"] for s in summary["skipped_frames"]}
    assert "import.energy_fidelity=hse06" in frame_reasons["hse_bands/OUTCAR@0"]
    assert "pbesol_u" in frame_reasons["spin/vasprun.xml@0"]
    assert "truncated/vasprun.xml" in stdout and "10 imported" in stdout


def imported(tmp_path) -> Path:
    root = folder(tmp_path, "mos2_shifts")
    out = tmp_path / "out"
    code, _, err = run("simulate.py", "stage=import_vasp", f"import.root={root}", f"workdir={out}")
    assert code == 0, err[-5:]
    return out / "dataset.extxyz"


def test_the_gnn_trains_on_the_imported_dataset(tmp_path):
    dataset = imported(tmp_path)
    code, _, err = run("train.py", f"data.path={dataset}", "data.target=gap_optb88_vdw", "trainer.max_epochs=2",
                       "logger=csv", "explain.graphs=0", f"hydra.run.dir={tmp_path / 'gnn'}")
    assert code == 0, err[-5:]
    metrics = json.loads((tmp_path / "gnn" / "metrics.json").read_text())
    assert metrics["target"] == "gap_optb88_vdw" and sum(metrics["frames"].values()) == 10


@pytest.mark.slow
def test_the_mlip_stage_trains_on_the_imported_dataset(tmp_path):
    dataset = imported(tmp_path)
    code, _, err = run("train.py", "experiment=mlip_base", f"mlip.dataset={dataset}", "mlip.epochs=1",
                       "mlip.export_model=null", f"mlip.out_dir={tmp_path / 'mlip'}", "mlip.val_fraction=0.1",
                       "mlip.evaluate.phonons=null", f"hydra.run.dir={tmp_path / 'mlip_run'}")
    assert code == 0, err[-5:]
    summary = json.loads((tmp_path / "mlip" / "summary.json").read_text())
    assert Path(summary["model"]).is_file() and summary["counts"]["train"] >= 7


def test_different_settings_in_one_fidelity_are_refused(tmp_path):
    """BiTeCl (ENCUT 600, 8x8x2, ISPIN 1, Gaussian smearing) and the MoS2 runs (ENCUT 500, 13x13x1, ISPIN 2,
    Methfessel-Paxton) are both optB88-vdW."""
    root = folder(tmp_path, "mos2_shifts", "relax")
    out = tmp_path / "out"
    code, _, err = run("simulate.py", "stage=import_vasp", f"import.root={root}", f"workdir={out}")
    assert code == 2 and len(err) == 1, err
    assert "optb88_vdw" in err[0] and "relax/vasprun.xml" in err[0] and "mos2_shifts/" in err[0]
    assert "different settings" in err[0] and "['encut_eV', 'ispin', 'kpoints', 'smearing']" in err[0]
    assert not out.exists() or not (out / "dataset.extxyz").exists()
    # naming the settings that may differ lets them in, recorded as varying
    code, _, err = run("simulate.py", "stage=import_vasp", f"import.root={root}", f"workdir={out}",
                       "import.ignore_settings=[encut_eV,kpoints,ispin,smearing]")
    assert code == 0, err[-3:]
    settings = read_settings(out / "dataset.extxyz").fidelities["optb88_vdw"]
    assert len(settings["encut_eV"]["varies"]) == 2


def test_steps_stride_partial_and_duplicates(tmp_path):
    root = folder(tmp_path, "relax", "truncated")
    out = tmp_path / "out"
    code, _, err = run("simulate.py", "stage=import_vasp", f"import.root={root}", f"workdir={out}",
                       "import.steps=all", "import.stride=4", "import.keep_partial=true")
    assert code == 0, err[-3:]
    frames = read_dataset(out / "dataset.extxyz")
    ids = [a.info["structure_id"] for a in frames]
    # relax: steps 0, 4, 8 and the last (10); truncated keeps its complete steps 0-2 with stride 4: step 0 (and
    # its last complete step 2), both the same structures as relax's steps 0 and 2: duplicates
    assert ids == ["relax/vasprun.xml@0", "relax/vasprun.xml@4", "relax/vasprun.xml@8", "relax/vasprun.xml@10",
                   "relax/vasprun.xml@2"] or ids[:4] == ["relax/vasprun.xml@0", "relax/vasprun.xml@4",
                                                         "relax/vasprun.xml@8", "relax/vasprun.xml@10"]
    energies = EXPECTED["relax"]["energies_eV"]
    for atoms in frames:
        step = int(atoms.info["structure_id"].split("@")[1])
        assert atoms.info["REF_energy"] == pytest.approx(energies[step], abs=1e-7)
    assert "gap_optb88_vdw" in frames[3].info and "gap_optb88_vdw" not in frames[0].info
    summary = json.loads((out / "dataset.import.json").read_text())
    duplicates = [s for s in summary["skipped_frames"] if s["reason"].startswith("duplicate of")]
    assert {s["structure_id"] for s in duplicates} >= {"truncated/vasprun.xml@0"}
    assert any("truncated file: imported" in w for w in summary["warnings"])


def test_killed_import_resumes_to_the_same_dataset(tmp_path):
    root = folder(tmp_path, "mos2_shifts")
    out = tmp_path / "out"
    args = ("simulate.py", "stage=import_vasp", f"import.root={root}", f"workdir={out}")
    assert run(*args)[0] == 0
    dataset = (out / "dataset.extxyz").read_bytes()
    cache = out / "dataset.extxyz.import_cache.jsonl"
    lines = cache.read_text().splitlines(keepends=True)
    assert len(lines) == 10
    # as a kill leaves it: four files read, the fifth line torn, no dataset yet
    cache.write_text("".join(lines[:4]) + lines[4][: len(lines[4]) // 2])
    (out / "dataset.extxyz").unlink()
    code, _, err = run(*args)
    assert code == 0, err[-3:]
    assert (out / "dataset.extxyz").read_bytes() == dataset
    assert len(cache.read_text().splitlines()) == 10


@pytest.mark.parametrize("override,fragment", [("import.root=/nonexistent/runs", "not a folder"),
                                               ("import.steps=some", "import.steps"),
                                               ("import.stride=0", "import.stride"),
                                               ("import.ignore_settings=[cutoff]", "import.ignore_settings")])
def test_bad_options(tmp_path, override, fragment):
    root = folder(tmp_path, "relax")
    code, _, err = run("simulate.py", "stage=import_vasp", f"import.root={root}", f"workdir={tmp_path / 'out'}",
                       override)
    assert code == 2 and len(err) == 1 and fragment in err[0], err
    assert not (tmp_path / "out").exists()
