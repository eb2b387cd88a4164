"""Shared plumbing of the Hydra entry points: one-line errors and override checks (run records: capml.io.records)."""

from __future__ import annotations

import functools
import logging
import sys
import warnings
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from capml.errors import InputError
from capml.io.paths import ROOT
from capml.io.records import RunFiles, track_created_folders

CONFIG_DIR = ROOT / "conf"

log = logging.getLogger("capml")

# library warnings (e3nn's at import, torch's on loading a model) are not the user's business: an error stays one line
warnings.filterwarnings("ignore", module=r"(e3nn|torch|torch_geometric|pytorch_lightning|lightning_fabric|mace)")
warnings.filterwarnings("ignore", category=UserWarning, message=r".*(TORCH_FORCE|weights_only).*")

if not OmegaConf.has_resolver("capml_root"):
    OmegaConf.register_new_resolver("capml_root", lambda: str(ROOT))


def fail(message: str, code: int = 2) -> None:
    message = " ".join(str(message).split())  # one line, whatever a library put into the message
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def one_line_errors(task: Callable[[DictConfig], object]) -> Callable[[DictConfig], object]:
    """Turn InputError (bad user input) into one line on stderr and exit status 2, after removing what the refused
    run made (:class:`RunFiles`); a run that ends otherwise publishes its pending records."""

    @functools.wraps(task)
    def wrapped(cfg: DictConfig):
        track_created_folders()
        files = RunFiles.snapshot()
        try:
            result = task(cfg)
        except InputError as err:
            if files is not None:
                files.clean()
            fail(str(err))
        except BaseException:
            if files is not None:
                files.publish()
            raise
        if files is not None:
            files.publish()
        return result

    return wrapped


def check_overrides(config_name: str, argv: list[str]) -> None:
    """Compose the config with the command-line overrides before Hydra starts, so an unknown key or
    config option is one line naming it instead of a Hydra traceback. Sweep overrides are left to Hydra."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides, user_dirs = _split_hydra_flags(argv)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        fail(f"cannot parse command-line overrides {overrides}: {err}")
    plain = [
        o.input_line
        for o in parsed
        if not o.is_sweep_override() and (not o.key_or_group.startswith("hydra")
                                          or o.key_or_group == "hydra.searchpath")
    ]
    if user_dirs:  # --config-dir: the user's own systems and experiments beside capml's
        if not all(Path(d).is_dir() for d in user_dirs):
            fail(f"--config-dir {[d for d in user_dirs if not Path(d).is_dir()][0]}: not a folder")
        plain.append("hydra.searchpath=[" + ",".join(f"file://{Path(d).resolve()}" for d in user_dirs) + "]")
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=plain)
            texts = [o for o in parsed if o.input_line in plain and _is_text(OmegaConf.select(
                cfg, o.key_or_group, default=None, throw_on_resolution_failure=False))]
            if texts:
                baseline = compose(config_name=config_name,
                                   overrides=[p for p in plain if p not in {o.input_line for o in texts}])
    except (HydraException, OmegaConfBaseException) as err:
        fail(f"config {CONFIG_DIR / (config_name + '.yaml')}: {_composition_error(err)}")
    for o in texts:
        if "${" in str(o.value()) or str(o.value()) in TEXT_VALUES.get(o.key_or_group, ()):
            continue  # an interpolation (resolved at run time), or a word the option takes beside numbers
        default = OmegaConf.select(baseline, o.key_or_group, default=None, throw_on_resolution_failure=False)
        expected = _expected_type(default)
        if expected:
            shown = default if isinstance(default, (bool, int, float)) else OmegaConf.to_container(default)
            fail(f"{o.input_line}: expected {expected} (the default is {shown})")


def _composition_error(err: Exception) -> str:
    """Hydra's error, in one line; an unknown option of a config group (``system=nonexistent``) names the options
    a user can choose, without the search path and without files that are not options (``_defaults``: the keys
    that a system fills in)."""
    from hydra.errors import MissingConfigException

    missing = getattr(err, "missing_cfg_file", None) if isinstance(err, MissingConfigException) else None
    if missing and "/" in missing and err.options is not None:
        group, _, name = missing.rpartition("/")
        options = [o for o in err.options if not o.rpartition("/")[2].startswith("_")]
        return f"{group}={name}: could not find '{missing}'; expected one of {options}"
    return " ".join(str(err).split())


# options whose default is a number but that also take a word
TEXT_VALUES = {"simulate.gaps.discard_fs": ("auto",), "simulate.x": ("all",)}


def train_config(argv: list[str]) -> tuple[str, list[str]]:
    """The primary config train.py composes, and the command line Hydra gets: the one ``--config-name`` names;
    else ``train_mlip`` (the MACE stage) for an experiment that configures ``mlip`` (experiment=mlip_finetune,
    mlip_base; the file looked up in the --config-dir folders, then conf/), else ``train`` (the GNN). ``task=mlip``
    and ``task=gnn``, capml's command line before there were two configs, still choose one, with a note."""
    named = _config_name_flag(argv)
    if named:
        return named, argv
    overrides, user_dirs = _split_hydra_flags(argv)
    tasks = [o for o in overrides if o.split("=", 1)[0] == "task"]
    unknown = [t for t in tasks if t not in ("task=gnn", "task=mlip")]
    if unknown:
        fail(f"{unknown[0]}: train.py has no tasks any more; `--config-name train_mlip` runs the MACE stage, "
             "the default config the GNN")
    experiments = [name.strip() for o in overrides if o.lstrip("+").split("=", 1)[0] == "experiment"
                   for name in o.split("=", 1)[1].strip("[]").split(",") if name.strip()]
    folders = [Path(d) for d in user_dirs] + [CONFIG_DIR]
    files = [next((f / "experiment" / f"{e}.yaml" for f in folders if (f / "experiment" / f"{e}.yaml").is_file()),
                  None) for e in experiments]
    mlip = "task=mlip" in tasks[-1:] or any(f is not None and "mlip" in OmegaConf.load(f) for f in files)
    name = "train_mlip" if mlip else "train"
    if tasks:
        print(f"note: {tasks[-1]} is the old spelling of `--config-name {name}`", file=sys.stderr)
    argv = [a for a in argv if a not in tasks]
    return name, (["--config-name", name] + argv if mlip else argv)


def _config_name_flag(argv: list[str]) -> str | None:
    """The primary config named on the command line (``--config-name NAME``, ``-cn NAME``, ``--config-name=NAME``)."""
    for k, arg in enumerate(argv):
        if arg in ("--config-name", "-cn") and k + 1 < len(argv):
            return argv[k + 1]
        if arg.startswith("--config-name="):
            return arg.split("=", 1)[1]
    return None


def _split_hydra_flags(argv: list[str]) -> tuple[list[str], list[str]]:
    """Overrides, and the folders of --config-dir/-cd, from the command line (Hydra's other flags dropped)."""
    overrides, dirs, skip = [], [], False
    for k, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg in ("--config-dir", "-cd"):
            if k + 1 < len(argv):
                dirs.append(argv[k + 1])
            skip = True
        elif arg.startswith("--config-dir="):
            dirs.append(arg.split("=", 1)[1])
        elif arg in ("--config-name", "-cn", "--config-path", "-cp", "--experimental-rerun", "--cfg", "-c",
                     "--package", "-p"):
            skip = True
        elif not arg.startswith("-"):
            overrides.append(arg)
    return overrides, dirs


def _is_text(value) -> bool:
    """A value the command line gave as text (or a list holding text): only these can be of the wrong type."""
    from omegaconf import ListConfig

    if isinstance(value, str):
        return True
    return isinstance(value, (list, ListConfig)) and any(isinstance(v, str) for v in value)


def _expected_type(default) -> str | None:
    """What a text override replaces: 'a number' where the default is one (or a list of them), else None."""
    from omegaconf import ListConfig

    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, (int, float)):
        return "a number"
    if isinstance(default, (list, ListConfig)) and len(default) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in default):
        return "a number or a list of numbers"
    return None


def run_hydra(main: Callable[[], object], config_name: str) -> None:
    """Entry-point body: validate overrides, then hand over to the @hydra.main function."""
    check_overrides(config_name, sys.argv[1:])
    track_created_folders()  # from before Hydra makes the run folder: a refused run knows it made it
    main()
