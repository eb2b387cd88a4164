"""Shared plumbing of the Hydra entry points: one-line errors, override checks, resolved configs."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from capml.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "conf"

log = logging.getLogger("capml")

if not OmegaConf.has_resolver("capml_root"):
    OmegaConf.register_new_resolver("capml_root", lambda: str(ROOT))


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def one_line_errors(task: Callable[[DictConfig], object]) -> Callable[[DictConfig], object]:
    """Turn InputError (bad user input) into one line on stderr and exit status 2."""

    @functools.wraps(task)
    def wrapped(cfg: DictConfig):
        try:
            return task(cfg)
        except InputError as err:
            fail(str(err))

    return wrapped


def check_overrides(config_name: str, argv: list[str]) -> None:
    """Compose the config with the command-line overrides before Hydra starts, so an unknown key or
    config option is one line naming it instead of a Hydra traceback. Sweep overrides are left to Hydra."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = [a for a in argv if not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        fail(f"cannot parse command-line overrides {overrides}: {err}")
    plain = [
        o.input_line
        for o in parsed
        if not o.is_sweep_override() and not o.key_or_group.startswith("hydra")
    ]
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            compose(config_name=config_name, overrides=plain)
    except (HydraException, OmegaConfBaseException) as err:
        message = " ".join(str(err).split())
        fail(f"config {CONFIG_DIR / (config_name + '.yaml')}: {message}")


def save_resolved_config(cfg: DictConfig, folder: str | Path, name: str) -> Path:
    """Write the fully resolved config next to a run's outputs."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.config.yaml"
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return path


def run_hydra(main: Callable[[], object], config_name: str) -> None:
    """Entry-point body: validate overrides, then hand over to the @hydra.main function."""
    check_overrides(config_name, sys.argv[1:])
    main()
