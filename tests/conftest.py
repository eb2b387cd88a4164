"""Shared fixtures. Expensive ones (a trained GNN, a tiny MACE, a pipeline run) are built once per test run, also
under pytest-xdist (``make test`` runs on every core): :func:`built_once` builds them in a folder every worker
shares, under a file lock, and the other workers read what the first one built.

``gap_dataset``: a small, really labelled Ag3SBr(x)I(1-x) set for the GNN tests.

20-atom (2x2x1) cells over all five compositions, equilibrium and rattled, labelled with tblite:
GFN2-xTB energy/forces/stress/gap on every frame (the cheap fidelity, ``gap_gfn2``) and an IPEA1-xTB
gap on every third frame (the "accurate" fidelity of the two-stage tests, ``gap_ipea1``). Labelling
takes about a minute once; the file is kept in tests/fixtures/ and reused (delete it to rebuild).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable


if os.environ.get("PYTEST_XDIST_WORKER"):
    # ``make test`` runs one pytest-xdist worker per core; torch's and BLAS's default of one thread per core in every
    # worker oversubscribes them (measured: a 2-thread MD test beside one busy core took 38 s, 23 s with one thread).
    # Only workers set it: the controller's environment is what the workers inherit, a user's setting wins.
    _threads = str(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
    for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_variable, _threads)

import numpy as np  # noqa: E402  (after the thread settings, which numpy and torch read when imported)
import pytest  # noqa: E402
import torch  # noqa: E402
from filelock import FileLock  # noqa: E402

if os.environ.get("OMP_NUM_THREADS"):
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

from capml.labels.bandgap import band_gap, normalised_occupations  # noqa: E402
from capml.labels.tblite import TBLiteLabeller  # noqa: E402

GAP_DATASET = Path(__file__).parent / "fixtures" / "ag3sbri_2x2x1_tblite.extxyz"


class GFN2WithIPEA1Gap(TBLiteLabeller):
    """GFN2-xTB labels plus, on request, the Γ gap of IPEA1-xTB (a second tight-binding Hamiltonian)."""

    optional = ("ipea1",)

    def settings(self):
        settings = super().settings()
        settings["ipea1"] = {**settings[self.fidelity], "method": "IPEA1-xTB"}
        return settings

    def label(self, atoms, extras=frozenset()):
        from ase.units import Bohr, Hartree
        from tblite.interface import Calculator

        labels = super().label(atoms)
        if "ipea1" in extras:
            calc = Calculator("IPEA1-xTB", atoms.numbers, atoms.positions / Bohr, lattice=atoms.cell[:] / Bohr,
                              periodic=np.array(atoms.pbc))
            calc.set("verbosity", 0)
            result = calc.singlepoint()
            eigs = (np.asarray(result.get("orbital-energies")) * Hartree).reshape(1, 1, -1)
            occs = normalised_occupations(np.asarray(result.get("orbital-occupations")).reshape(eigs.shape))
            labels.gaps_eV["ipea1"] = band_gap(eigs, occs).gap_eV
        return labels


def build_gap_dataset(path: Path) -> Path:
    from capml.labels.run import run_labels
    from capml.structures.sampler import sample_structures
    from capml.structures.system import load_system

    system = load_system("ag3sbri", supercell=(2, 2, 1))
    structures = sample_structures(system, compositions=None, temperatures_K=[], phonon_samples=0,
                                   uniform_samples=3, equilibrium_samples=1, end_member_phonons=None,
                                   rattle_amplitude_A=0.1, seed=7)
    run_labels(structures, path, GFN2WithIPEA1Gap(), subsets={"ipea1": 3})
    return path


def run_root(tmp_path_factory) -> Path:
    """The temporary folder of this whole test run: shared by all xdist workers (each has its own basetemp below)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once(tmp_path_factory, name: str, build: Callable[[Path], dict]) -> dict:
    """``build(folder)`` once per test run, whichever worker asks first; the others wait for it and get the same
    JSON record (paths as strings). A build that raised leaves no record, so the next caller builds again."""
    folder = run_root(tmp_path_factory) / f"built_{name}"
    record = folder / "built.json"
    with FileLock(str(folder) + ".lock"):
        if not record.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            record.write_text(json.dumps(build(folder), default=str))
    return json.loads(record.read_text())


@pytest.fixture(scope="session")
def gap_dataset() -> Path:
    if not GAP_DATASET.exists():
        build_gap_dataset(GAP_DATASET)
    return GAP_DATASET


def gnn_config(gap_dataset: Path, out: Path, *overrides: str):
    """conf/train.yaml composed as train.py would, on the test set, with a tiny model and few epochs."""
    from hydra import compose, initialize_config_dir

    from capml.cli import CONFIG_DIR

    defaults = [f"data.path={gap_dataset}", "data.target=gap_gfn2", f"data.cache_dir={out.parent / 'graphs'}",
                "data.split_fractions=[0.6,0.2,0.2]", "data.batch_size=4", "logger=csv", "trainer.max_epochs=12",
                "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "explain.graphs=0",
                "model.network.hidden=16", f"paths.output_dir={out}"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=defaults + list(overrides))


@pytest.fixture(scope="session")
def trained_run(gap_dataset, tmp_path_factory) -> dict:
    """metrics.json contents of one short training run of the paper model on gap_gfn2 (once per test run)."""
    def build(folder: Path) -> dict:
        from capml.models.train import train_one

        return {**train_one(gnn_config(gap_dataset, folder / "run")), "out": str(folder / "run")}

    metrics = built_once(tmp_path_factory, "trained_run", build)
    return {**metrics, "out": Path(metrics["out"])}


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's read-only shared folder (real VASP output and its expected values): $CAPML_SHARED_DIR,
    or ../shared next to the checkout."""
    import os

    folder = Path(os.environ.get("CAPML_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
    if not (folder / "data").is_dir():
        pytest.skip(f"{folder}: the project's shared data folder is not there (set CAPML_SHARED_DIR)")
    return folder
