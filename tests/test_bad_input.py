"""Bad input through the real entry points, from one table: every case must end with exit status 2, one stderr line
(`error: ...`) naming the file, frame or key and what was expected, no traceback, and nothing left in the run's
output folders. The cases run two at a time in one module fixture (each is a fresh `python simulate.py|train.py`);
each test then checks one case.

Kinds covered: missing/corrupt files, wrong-typed numbers, unknown keys and options, physically impossible data
(NaN or negative gaps, repeated ids, atoms on top of each other, cells without periodicity), models used for what
they were not trained for (a text file, an energy model as a gap model, elements the MLIP does not know), labels
of other settings mixed in, resume of changed inputs, options out of range."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from capml.io.contract import DatasetSettings, read_settings, write_dataset
from tests.cli_runner import run_cli

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "data" / "ag3sbri"
GNN = ROOT / "models" / "gnn_gap_hse06"
MACE = ROOT / "models" / "mace_finetuned.model"
FIXTURE = ROOT / "tests" / "fixtures" / "ag3sbri_2x2x1_tblite.extxyz"
FIXTURES_VASP = ROOT / "tests" / "fixtures" / "vasp"
SETTINGS = DatasetSettings({"REF": {"code": "test", "fidelity": "emt"}, "emt": {"code": "test"}})


def crystal(sid="s0", **info) -> Atoms:
    atoms = bulk("Cu", cubic=True)
    atoms.info.update({"REF_energy": -1.0, "REF_stress": np.zeros((3, 3)), "structure_id": sid, "gap_emt": 1.0,
                       **info})
    atoms.arrays["REF_forces"] = np.zeros((4, 3))
    return atoms


def dataset(name, frames, settings=SETTINGS):
    def make(folder: Path) -> None:
        write_dataset(folder / name, frames() if callable(frames) else frames, settings)
    return make


def text(name, content="not a model\n"):
    def make(folder: Path) -> None:
        (folder / name).write_text(content)
    return make


# contents of a file given where a model is expected: torch raises another exception type for each of them
# (KeyError or IndexError for text, EOFError for an empty file, UnpicklingError for random bytes, RuntimeError for a
# zip of something else); a model of the other kind loads but is not what was asked for
NOT_A_MODEL = ("text", "csv", "empty", "random", "zip")


def model_file(name: str, content: str):
    def make(folder: Path) -> None:
        import zipfile

        path = folder / name
        if content == "text":
            path.write_text("not a model\n")
        elif content == "csv":
            path.write_text("structure_id,gap\ns0,1.2\n")  # torch: IndexError: pop from empty list
        elif content == "empty":
            path.write_bytes(b"")
        elif content == "random":
            path.write_bytes(np.random.default_rng(0).bytes(4096))
        elif content == "zip":
            with zipfile.ZipFile(path, "w") as archive:
                archive.writestr("archive/data.txt", "a zip, not a checkpoint")
        elif content == "mace":
            shutil.copyfile(MACE, path)
        elif content == "gnn":
            shutil.copyfile(sorted(GNN.glob("*.ckpt"))[0], path)
    return make


def structure_file(name: str, content: str):
    """A structure file that is not one: truncated in the middle of a frame, binary, empty or blank."""
    def make(folder: Path) -> None:
        path = folder / name
        if content == "truncated":
            text = FIXTURE.read_text()
            path.write_text(text[: len(text) // 3])
        elif content == "binary":
            path.write_bytes(np.random.default_rng(1).bytes(4096))
        elif content == "empty":
            path.write_bytes(b"")
        elif content == "blank":
            path.write_text("\n\n")
    return make


def moved_structures(folder: Path) -> None:
    """A dataset labelled as `labels=ase` labels it (EMT), then its input re-sampled: same ids, atoms moved."""
    from ase.calculators.emt import EMT

    from capml.labels.ase_calc import ASECalculatorLabeller
    from capml.labels.run import run_labels

    frames = [bulk("Cu", cubic=True) for _ in range(2)]
    for i, atoms in enumerate(frames):
        atoms.info["structure_id"] = f"s{i}"
    write_dataset(folder / "structures.extxyz", frames)
    run_labels(frames, folder / "dataset.extxyz", ASECalculatorLabeller(EMT, fidelity="emt", settings={}, gap=False))
    moved = [a.copy() for a in frames]
    for a in moved:
        a.positions[0] += 0.3
    write_dataset(folder / "structures.extxyz", moved)


def two_atoms_on_one_site():
    atoms = crystal()
    atoms.positions[1] = atoms.positions[0] + 0.01
    return [atoms]


def element(z: int):
    def frames():
        atoms = crystal()
        atoms.numbers[1] = z
        return [atoms]
    return frames


def non_periodic():
    atoms = crystal()
    atoms.pbc = False
    return [atoms]


def mixed_fixture(folder: Path) -> None:
    """The GFN2 fixture and a PBEsol-labelled file with new ids: extra training labels of another labeller."""
    frames = [crystal(f"x{i}") for i in range(2)]
    write_dataset(folder / "other.extxyz", frames, read_settings(BUNDLED / "dataset.extxyz"))


def copper_dataset(folder: Path) -> None:
    frames = []
    for i in range(12):
        atoms = crystal(f"cu{i}", config_id=f"c{i}")
        atoms.rattle(0.05, seed=i)
        frames.append(atoms)
    write_dataset(folder / "cu.extxyz", frames, SETTINGS)


def energy_model(folder: Path) -> None:
    """A bundled gap checkpoint relabelled as a model of energy_per_atom: a real checkpoint of another target."""
    import torch

    checkpoint = torch.load(sorted(GNN.glob("*.ckpt"))[0], map_location="cpu", weights_only=False)
    checkpoint["hyper_parameters"]["target"] = "energy_per_atom"
    torch.save(checkpoint, folder / "energy.ckpt")


@dataclass
class Case:
    id: str
    script: str
    args: list[str]
    fragments: list[str]
    setup: Callable[[Path], None] | None = None
    result: dict = field(default_factory=dict)


def S(id, args, fragments, setup=None):  # noqa: N802
    return Case(id, "simulate.py", args, fragments, setup)


def T(id, args, fragments, setup=None):  # noqa: N802
    return Case(id, "train.py", args, fragments, setup)


GNN_FAST = ["trainer.max_epochs=1", "logger=csv", "explain.graphs=0"]
MLIP_FAST = ["--config-name", "train_mlip", "mlip.epochs=1", "mlip.evaluate.phonons=null"]

CASES = [
    # --- validate: impossible data ---------------------------------------------------------------------------
    S("validate_missing", ["stage=validate", "validate.path={in}/none.extxyz"], ["none.extxyz", "not found"]),
    S("validate_corrupt", ["stage=validate", "validate.path={in}/bad.extxyz"], ["bad.extxyz", "cannot read"],
      text("bad.extxyz", "4\nLattice=\"1 0 0\" Properties=species:S:1:pos:R:3\nCu 0 0\n")),
    S("validate_nan_gap", ["stage=validate", "validate.path={in}/d.extxyz"], ["d.extxyz", "frame 0", "'gap_emt' = nan"],
      dataset("d.extxyz", lambda: [crystal(gap_emt=float("nan"))])),
    *[S(f"validate_{key}_not_a_number", ["stage=validate", "validate.path={in}/d.extxyz"],
        ["d.extxyz", "frame 0", f"'{key}' = 'abc'", "expected"],
        dataset("d.extxyz", lambda key=key: [crystal(**{key: "abc"})]))
      for key in ("REF_stress", "REF_energy")],
    *[S(f"validate_element_{z}", ["stage=validate", "validate.path={in}/d.extxyz"],
        ["d.extxyz", "frame 0", f"atomic number {z}", "expected elements H to Pu"], dataset("d.extxyz", element(z)))
      for z in (0, 95, 118)],
    *[S(f"validate_file_{c}", ["stage=validate", "validate.path={in}/d.extxyz"], ["d.extxyz", fragment],
        structure_file("d.extxyz", c))
      for c, fragment in [("truncated", "cannot read"), ("binary", "cannot read"), ("empty", "contains no structures"),
                          ("blank", "contains no structures")]],
    S("validate_negative_gap", ["stage=validate", "validate.path={in}/d.extxyz"], ["frame 0", "gap_emt", ">= 0"],
      dataset("d.extxyz", lambda: [crystal(gap_emt=-0.2)])),
    S("validate_repeated_id", ["stage=validate", "validate.path={in}/d.extxyz"], ["frame 1", "'s0'", "repeats"],
      dataset("d.extxyz", lambda: [crystal("s0"), crystal("s0")])),
    S("validate_atoms_on_one_site", ["stage=validate", "validate.path={in}/d.extxyz"], ["frame 0", "apart"],
      dataset("d.extxyz", two_atoms_on_one_site)),
    S("validate_not_periodic", ["stage=validate", "validate.path={in}/d.extxyz"], ["frame 0", "pbc", "periodic"],
      dataset("d.extxyz", non_periodic)),
    S("validate_missing_energy", ["stage=validate", "validate.path={in}/d.extxyz"], ["frame 1", "REF_energy"],
      dataset("d.extxyz", lambda: [crystal()] + [_without(crystal("s1"), "REF_energy")])),
    S("validate_nan_forces", ["stage=validate", "validate.path={in}/d.extxyz"], ["REF_forces", "NaN"],
      dataset("d.extxyz", lambda: [_nan_forces(crystal())])),
    # --- label -------------------------------------------------------------------------------------------------
    S("label_missing_structures", ["stage=label", "labels=ase", "label.structures={in}/none.extxyz"],
      ["none.extxyz", "not found"]),
    S("label_no_structure_id", ["stage=label", "labels=ase", "label.structures={in}/s.extxyz"],
      ["s.extxyz", "structure_id"], dataset("s.extxyz", lambda: [bulk("Cu", cubic=True)], None)),
    S("label_atoms_on_one_site", ["stage=label", "labels=ase", "label.structures={in}/d.extxyz"],
      ["d.extxyz", "frame 0", "apart"], dataset("d.extxyz", two_atoms_on_one_site, None)),
    S("label_no_sidecar", ["stage=label", "labels=ase", "label.structures={in}/s.extxyz",
                           "label.out={in}/old.extxyz"], ["old.extxyz", "no label settings"],
      lambda f: (dataset("s.extxyz", [crystal("s0")], None)(f), dataset("old.extxyz", [crystal("s0")], None)(f))),
    S("label_resampled_input", ["stage=label", "labels=ase", "label.structures={in}/structures.extxyz",
                                "label.out={in}/dataset.extxyz"],
      ["dataset.extxyz", "'s0'", "moved by"], moved_structures),
    S("label_unknown_subset", ["stage=label", "labels=ase", "label.structures={in}/s.extxyz", "+labels.subsets.hse06=1"],
      ["labels.subsets", "hse06"], dataset("s.extxyz", [crystal("s0")], None)),
    S("label_bad_shard", ["stage=label", "labels=ase", "label.structures={in}/s.extxyz", "label.shard=3/2"],
      ["label.shard", "3/2"], dataset("s.extxyz", [crystal("s0")], None)),
    # --- configuration and types -------------------------------------------------------------------------------
    S("unknown_stage", ["stage=nonexistent"], ["stage='nonexistent'"]),
    S("unknown_key", ["label.nonexistent_key=1"], ["nonexistent_key"]),
    S("unknown_labeller", ["labels=nonexistent_backend"], ["nonexistent_backend"]),
    S("unknown_system", ["system=nonexistent"], ["system=nonexistent", "expected one of ['ag3sbri', 'cspbbri']"]),
    S("temperature_not_a_number", ["stage=gaps", "simulate.temperature=abc"], ["simulate.temperature=abc", "number"]),
    S("x_list_with_text", ["stage=gaps", "simulate.x=[0,a]"], ["simulate.x=[0,a]", "number"]),
    S("temperature_negative", ["stage=md", "simulate.temperature=-5"], ["simulate.temperature", "above 0"]),
    S("bad_dtype", ["stage=configurations", "simulate.dtype=float16"], ["simulate.dtype", "float16"]),
    S("no_cuda", ["stage=configurations", "simulate.device=cuda"], ["cuda"]),
    S("md_negative_timestep", ["stage=md", "simulate.md.timestep_fs=-1"], ["timestep_fs", "positive"]),
    # --- models used for what they are not ---------------------------------------------------------------------
    S("mlip_model_missing", ["stage=configurations", "simulate.mlip_model={in}/none.model"],
      ["none.model", "not found"]),
    *[S(f"mlip_model_is_{c}", ["stage=configurations", "simulate.mlip_model={in}/m.model"],
        ["m.model", "not a MACE model"], model_file("m.model", c)) for c in (*NOT_A_MODEL, "gnn")],
    S("gnn_checkpoint_missing", ["stage=gaps", "simulate.gnn_checkpoint={in}/none.ckpt"], ["none.ckpt", "not found"]),
    *[S(f"gnn_checkpoint_is_{c}", ["stage=gaps", "simulate.gnn_checkpoint={in}/m.ckpt"],
        ["m.ckpt", "not a capml GNN checkpoint"], model_file("m.ckpt", c)) for c in (*NOT_A_MODEL, "mace")],
    S("gnn_checkpoint_energy_model", ["stage=gaps", "simulate.gnn_checkpoint={in}/energy.ckpt"],
      ["energy.ckpt", "energy_per_atom", "band-gap model"], energy_model),
    S("mlip_unknown_element_of_system", ["stage=configurations", "system.species=[Cl,I]",
                                         "+system.lattice_constants.Cl=4.7"],
      ["simulate.mlip_model", "not ['Cl']"]),
    S("gnn_folder_without_ckpt", ["stage=gaps", "simulate.gnn_checkpoint={in}"], ["no *.ckpt"]),
    S("sample_end_member_phonons_missing", ["stage=sample", "system.end_member_phonons.Br={in}/no.yaml"],
      ["no.yaml", "not found"]),
    S("sample_composition_off_the_supercell", ["stage=sample", "structures.compositions=[0.3]"],
      ["structures.compositions=0.3", "k/8"]),
    S("sample_system_parent_missing", ["stage=sample", "system.parent={in}/none.cif"],
      ["system.parent", "none.cif", "not found"]),
    # --- import ------------------------------------------------------------------------------------------------
    S("import_no_root", ["stage=import_vasp"], ["import.root"]),
    S("import_root_missing", ["stage=import_vasp", "import.root={in}/nothing"], ["nothing", "not a folder"]),
    S("import_empty_root", ["stage=import_vasp", "import.root={in}"], ["no VASP output"]),
    S("import_band_run_only", ["stage=import_vasp", "import.root={in}"], ["no frame with energy, forces"],
      lambda f: shutil.copytree(FIXTURES_VASP / "hse_bands", f / "hse_bands")),
    S("import_bad_steps", ["stage=import_vasp", "import.root={in}", "import.steps=every"], ["import.steps"]),
    # --- train.py: the GNN -------------------------------------------------------------------------------------
    T("gnn_epochs_not_a_number", ["trainer.max_epochs=abc"], ["trainer.max_epochs=abc", "number"]),
    T("gnn_batch_not_a_number", ["data.batch_size=1e"], ["data.batch_size=1e", "number"]),
    T("gnn_dataset_missing", ["data.path={in}/none.extxyz", *GNN_FAST], ["none.extxyz", "not found"]),
    T("gnn_unknown_target", [f"data.path={FIXTURE}", "data.target=gap_nonexistent", "data.cache_dir={in}/g",
                             *GNN_FAST], ["gap_nonexistent"]),
    *[T(f"gnn_finetune_{c}", [f"data.path={FIXTURE}", "data.target=gap_gfn2", "data.cache_dir={in}/g",
                              "finetune.checkpoint={in}/m.ckpt", *GNN_FAST], ["m.ckpt", "not a capml GNN checkpoint"],
        model_file("m.ckpt", c)) for c in (*NOT_A_MODEL, "mace")],
    T("gnn_graph_cache_beside_the_input", ["data.path={in}/bad.extxyz", *GNN_FAST], ["bad.extxyz", "cannot read"],
      structure_file("bad.extxyz", "truncated")),
    T("gnn_extra_train_empty", [f"data.path={FIXTURE}", "data.target=gap_gfn2", "data.cache_dir={in}/g",
                                "data.extra_train=[{in}/empty.extxyz]", *GNN_FAST],
      ["empty.extxyz", "contains no structures"], structure_file("empty.extxyz", "empty")),
    T("gnn_finetune_missing", [f"data.path={FIXTURE}", "data.target=gap_gfn2", "data.cache_dir={in}/g",
                               "finetune.checkpoint={in}/none.ckpt", *GNN_FAST], ["none.ckpt", "not found"]),
    T("gnn_extra_train_other_settings", [f"data.path={FIXTURE}", "data.target=energy_per_atom",
                                         "data.cache_dir={in}/g", "data.extra_train=[{in}/other.extxyz]",
                                         *GNN_FAST], ["other.extxyz", "differ"], mixed_fixture),
    T("gnn_unknown_model", ["model=nonexistent"], ["nonexistent"]),
    # --- train.py --config-name train_mlip (or an experiment that configures mlip) -------------------------------
    T("mlip_epochs_not_a_number", ["experiment=mlip_finetune", "mlip.epochs=abc"], ["mlip.epochs=abc", "number"]),
    T("mlip_dataset_missing", [*MLIP_FAST, "mlip.dataset={in}/none.extxyz", "mlip.out_dir={out}/m"],
      ["none.extxyz", "not found"]),
    *[T(f"mlip_foundation_{c}", [*MLIP_FAST, f"mlip.dataset={FIXTURE}", "mlip.foundation_model={in}/m.model",
                                 "mlip.out_dir={out}/m"], ["m.model", "not a MACE model"], model_file("m.model", c))
      for c in (*NOT_A_MODEL, "gnn")],
    # the Hydra run folder ({out}/t) inside mlip.out_dir ({out}): the lock and the splits go too
    T("mlip_foundation_text_run_dir_inside_out_dir", [*MLIP_FAST, f"mlip.dataset={FIXTURE}",
                                                      "mlip.foundation_model={in}/m.model", "mlip.out_dir={out}"],
      ["m.model", "not a MACE model"], model_file("m.model", "text")),
    T("mlip_extra_train_other_settings_run_dir_inside_out_dir",
      [*MLIP_FAST, f"mlip.dataset={FIXTURE}", "mlip.out_dir={out}", "mlip.extra_train=[{in}/other.extxyz]"],
      ["other.extxyz", "differ"], mixed_fixture),
    T("mlip_extra_args_not_a_flag", [*MLIP_FAST, f"mlip.dataset={FIXTURE}", "mlip.out_dir={out}/m",
                                     "+mlip.extra_args={not_a_flag:1}"], ["'not_a_flag'", "mace_run_train flag"]),
    T("mlip_extra_train_empty", [*MLIP_FAST, f"mlip.dataset={FIXTURE}", "mlip.out_dir={out}/m",
                                 "mlip.extra_train=[{in}/empty.extxyz]"], ["empty.extxyz", "contains no structures"],
      structure_file("empty.extxyz", "empty")),
    T("mlip_foundation_missing", [*MLIP_FAST, f"mlip.dataset={FIXTURE}", "mlip.foundation_model={in}/none.model",
                                  "mlip.out_dir={out}/m"], ["none.model", "mace-mp"]),
    T("mlip_unknown_element", [*MLIP_FAST, "mlip.dataset={in}/cu.extxyz", "mlip.out_dir={out}/m"],
      ["Cu", "knows"], copper_dataset),
    T("mlip_extra_train_other_settings", [*MLIP_FAST, f"mlip.dataset={FIXTURE}", "mlip.out_dir={out}/m",
                                          "mlip.extra_train=[{in}/other.extxyz]"], ["other.extxyz", "differ"],
      mixed_fixture),
]


def _without(atoms, key):
    atoms.info.pop(key)
    return atoms


def _nan_forces(atoms):
    atoms.arrays["REF_forces"][1, 2] = np.nan
    return atoms


def _run(case: Case, base: Path) -> None:
    folder = base / case.id
    inputs, out = folder / "in", folder / "out"
    inputs.mkdir(parents=True)
    if case.setup is not None:
        case.setup(inputs)
    before = sorted(p.relative_to(inputs) for p in inputs.rglob("*"))
    args = [a.replace("{in}", str(inputs)).replace("{out}", str(out)) for a in case.args]
    if case.script == "simulate.py":
        args.append(f"workdir={out}/w")
    else:
        args.append(f"hydra.run.dir={out}/t")
    done = run_cli(case.script, *args)  # a fresh process, forked from one that has imported torch and capml
    after = sorted(p.relative_to(inputs) for p in inputs.rglob("*"))
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.exists() else []
    case.result = {"code": done.returncode, "lines": [ln for ln in done.stderr.splitlines() if ln.strip()],
                   "left": left, "inputs_changed": [str(p) for p in after if p not in before and
                                                    not str(p).startswith("g")]}


@pytest.fixture(scope="module")
def results(request, tmp_path_factory):
    """The cases whose tests this session runs (all of them, or those that ``-k`` selects), two at a time."""
    selected = {item.callspec.params["case_id"] for item in request.session.items
                if getattr(item, "module", None) is request.module
                and "case_id" in getattr(getattr(item, "callspec", None), "params", {})}
    base = tmp_path_factory.mktemp("bad_input")
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda case: _run(case, base), [c for c in CASES if c.id in selected]))
    yield {case.id: case for case in CASES}
    shutil.rmtree(base, ignore_errors=True)


def test_the_table_covers_every_entry_point():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
    stages = {a.split("=")[1] for c in CASES for a in c.args if a.startswith("stage=")}
    assert {"validate", "label", "sample", "configurations", "md", "gaps", "import_vasp"} <= stages
    assert any("train_mlip" in c.args for c in CASES) and sum(c.script == "train.py" for c in CASES) >= 10


@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(results, case_id):
    case = results[case_id]
    result = case.result
    assert result["code"] == 2, result["lines"][-5:]
    assert len(result["lines"]) == 1, result["lines"][-8:]
    line = result["lines"][0]
    assert line.startswith("error: ") and "Traceback" not in line
    assert "np.float64" not in line and "_defaults" not in line  # values as numbers, options a user can choose
    for fragment in case.fragments:
        assert fragment in line, line
    assert result["left"] == [], result["left"]
    assert result["inputs_changed"] == [], result["inputs_changed"]


# --- the Python API refuses what the CLI refuses, as InputError with the CLI's message ----------------------------


@pytest.fixture(scope="module")
def gap_model():
    from capml.models.predict import GapPredictor

    return GapPredictor.from_checkpoint(sorted(GNN.glob("*.ckpt"))[0])


@pytest.mark.parametrize("content", [*NOT_A_MODEL, "mace"])
def test_python_api_refuses_a_file_that_is_not_a_gnn_checkpoint(tmp_path, content):
    from capml.errors import InputError
    from capml.models.predict import GapPredictor
    from capml.simulate.run import load_gap_model

    model_file("m.ckpt", content)(tmp_path)
    with pytest.raises(InputError, match=r"m\.ckpt: not a capml GNN checkpoint") as api:
        GapPredictor.from_checkpoint(tmp_path / "m.ckpt")
    assert "Traceback" not in str(api.value) and "\x1b" not in str(api.value)
    with pytest.raises(InputError) as cli:  # what `simulate.py stage=gaps simulate.gnn_checkpoint=...` loads with
        load_gap_model(tmp_path / "m.ckpt", "simulate.gnn_checkpoint")
    assert str(api.value) == str(cli.value)


def _structure(case: str) -> Atoms:
    atoms = bulk("Cu", cubic=True)
    if case == "same_site":
        atoms.positions[1] = atoms.positions[0]
    elif case == "nan_position":
        atoms.positions[2, 1] = np.nan
    elif case == "element_118":
        atoms.numbers[3] = 118
    elif case == "not_periodic":
        atoms.pbc = False
    return atoms


@pytest.mark.parametrize("case", ["same_site", "nan_position", "element_118", "not_periodic"])
def test_python_api_refuses_a_structure_the_cli_refuses(gap_model, case):
    from capml.errors import InputError
    from capml.io.contract import validate_frames

    with pytest.raises(InputError) as api:
        gap_model.predict([bulk("Ag", cubic=True), _structure(case)])
    with pytest.raises(InputError) as cli:  # what `simulate.py stage=validate` (and the label stage) check
        validate_frames([_structure(case)], require=(), where="d.extxyz")
    prefix = "<atoms> (structures 0..1): structure 1: "
    assert str(api.value).startswith(prefix), api.value
    assert str(api.value)[len(prefix):] == str(cli.value).split("frame 0: ", 1)[1]


@pytest.mark.parametrize("content", ["truncated", "binary", "empty", "blank"])
def test_python_api_refuses_a_structure_file_it_cannot_read(gap_model, tmp_path, content):
    from capml.errors import InputError
    from capml.io.extxyz import read_structures

    structure_file("t.extxyz", content)(tmp_path)
    with pytest.raises(InputError, match=r"t\.extxyz: (cannot read|contains no) structures") as api:
        list(gap_model.predict_file(tmp_path / "t.extxyz"))
    with pytest.raises(InputError) as cli:  # what every stage of the CLI reads structures with
        read_structures(tmp_path / "t.extxyz")
    assert str(api.value) == str(cli.value)
