"""Shared plumbing of the Hydra entry points: one-line errors, override checks, resolved configs."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from capml.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
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


# --- records of a run, kept pending until it ends -------------------------------------------------------------
# A run's records (Hydra's copy of its config in <output_subdir>, ``<stage>.config.yaml``) say with which settings
# the results beside them were made. A run writes them under a pending name (``<name>.pending-<pid>@<host>``) and
# renames them over the records of the earlier run when it ends: a run refused for bad input, or one refused while
# another writes the same folder, never touches the records of that other run.

PENDING = ".pending-"


def _run_token() -> str:
    import socket

    return f"{os.getpid()}@{socket.gethostname()}"


def pending_path(path: str | Path) -> Path:
    """The name under which this process writes the record ``path`` until its run ends."""
    path = Path(path)
    return path.with_name(f"{path.name}{PENDING}{_run_token()}")


def published_path(path: str | Path) -> Path | None:
    """The record a pending name stands for, or None for a name that is not pending."""
    path = Path(path)
    name, sep, _ = path.name.partition(PENDING)
    return path.with_name(name) if sep and name else None


def publish(pending: str | Path) -> Path | None:
    """Rename a pending record (file or folder) over its published name; stale pending records of the same name
    left by killed runs of this host go too. Returns the published path (None: nothing was pending)."""
    import shutil

    pending = Path(pending)
    final = published_path(pending)
    if final is None or not pending.exists():
        return None
    if pending.is_dir() and final.is_dir():
        old = final.with_name(f"{final.name}.old{PENDING}{_run_token()}")
        os.replace(final, old)
        os.replace(pending, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(pending, final)
    for stale in final.parent.glob(f"{final.name}{PENDING}*"):
        if _killed(stale.name.partition(PENDING)[2]):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    return final


def _killed(token: str) -> bool:
    """True for the token of a process of this host that has ended (a run killed before it published)."""
    import socket

    pid, _, host = token.partition("@")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


if not OmegaConf.has_resolver("capml_pending"):  # hydra.output_subdir: ${capml_pending:.hydra/${stage}}
    OmegaConf.register_new_resolver("capml_pending", lambda subdir: str(pending_path(subdir)))


@contextlib.contextmanager
def run_record(cfg: DictConfig, folder: str | Path, name: str):
    """Around the work of one run: its resolved config, pending (``<name>.config.yaml.pending-...``) while it runs,
    published when it ends, and removed if it is refused for bad input."""
    pending = pending_path(save_resolved_config(cfg, folder, name, pending=True))
    try:
        yield
    except InputError:
        pending.unlink(missing_ok=True)
        raise
    except BaseException:
        publish(pending)
        raise
    publish(pending)


# --- what a run made, so that a run refused for bad input removes exactly that --------------------------------
_CREATED: list[Path] = []  # folders this process made since track_created_folders
_STARTED = [float("inf")]  # when track_created_folders started noting them


def track_created_folders() -> None:
    """Note every folder this process makes from now on: ``os.mkdir``, under ``Path.mkdir`` and ``os.makedirs``
    alike. Only folders noted here (and left empty) are removed after a refusal, never another run's."""
    if getattr(os.mkdir, "capml_tracked", False):
        return
    import time

    _STARTED[0] = time.time()
    original = os.mkdir

    def mkdir(path, mode=0o777, *, dir_fd=None):
        if dir_fd is not None:
            return original(path, mode, dir_fd=dir_fd)
        original(path, mode)
        _CREATED.append(Path(os.path.abspath(path)))

    mkdir.capml_tracked = True
    os.mkdir = mkdir


class _LogTap:
    """The stream of the run's log handler: each line is written under an exclusive lock of the file and noted,
    so that a refused run cuts its own lines out of a log that other runs write to as well."""

    def __init__(self, stream):
        self.stream, self.written = stream, []

    def write(self, text: str) -> int:
        import fcntl

        fcntl.flock(self.stream.fileno(), fcntl.LOCK_EX)
        try:
            count = self.stream.write(text)
            self.stream.flush()
        finally:
            fcntl.flock(self.stream.fileno(), fcntl.LOCK_UN)
        self.written.append(text.encode(self.stream.encoding or "utf-8"))
        return count

    def __getattr__(self, name):
        return getattr(self.stream, name)


class RunFiles:
    """What a run made, so that a run refused for bad input leaves nothing behind and touches nothing of another
    run's: its pending Hydra records, its own lines of the log, folders it made that are left empty (beside its
    input too, e.g. a graph cache) and the run folder when it made it. Results of work done before the refusal are
    kept; the records of earlier or concurrent runs are never touched."""

    def __init__(self, root: Path, hydra_dir: Path | None, log_file: Path | None):
        self.root = root.absolute()
        self.hydra_dir = hydra_dir.absolute() if hydra_dir is not None else None
        self.log_file = log_file.absolute() if log_file is not None else None
        # a run folder that holds nothing but this run's Hydra records and log is this run's own
        self.new_root = self.root in _CREATED or all(self._own(p) for p in self._walk())
        # so is an empty log in it, or one whose inode changed last after this process started (opened, made by it)
        stat = self.log_file.stat() if self.log_file is not None and self.log_file.exists() else None
        self.log_made_here = stat is not None and not stat.st_size and (
            self.new_root or stat.st_ctime >= _STARTED[0] - 0.05)
        self.log_tap = self._tap_log()

    def _own(self, path: Path) -> bool:
        """The log, the Hydra records of this run, or a folder above them."""
        mine = [p for p in (self.hydra_dir, self.log_file) if p is not None]
        return any(path == p or path in p.parents or (p == self.hydra_dir and p in path.parents) for p in mine)

    @classmethod
    def snapshot(cls) -> "RunFiles | None":
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return None
        hc = HydraConfig.get()
        root = Path(hc.runtime.output_dir)
        hydra_dir = root / hc.output_subdir if hc.output_subdir else None
        log_file = root / f"{hc.job.name}.log"
        return cls(root, hydra_dir, log_file)

    def _walk(self):
        if not self.root.exists():
            return
        for folder, dirs, names in os.walk(self.root):
            for name in dirs + names:
                yield Path(folder) / name

    def _tap_log(self) -> _LogTap | None:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler) and self.log_file is not None and \
                    Path(handler.baseFilename) == self.log_file and handler.stream is not None:
                if not isinstance(handler.stream, _LogTap):
                    handler.stream = _LogTap(handler.stream)
                return handler.stream
        return None

    def publish(self) -> None:
        """The run ended (not refused): its pending Hydra records replace the earlier run's."""
        if self.hydra_dir is not None:
            publish(self.hydra_dir)
        _CREATED.clear()

    def clean(self) -> None:
        import shutil

        logging.shutdown()  # nothing more goes into the log
        if self.hydra_dir is not None and (published_path(self.hydra_dir) or self.hydra_dir in _CREATED):
            shutil.rmtree(self.hydra_dir, ignore_errors=True)  # pending, or made by this run: its own records
        self._cut_log()
        made = set(_CREATED) | ({self.root} if self.new_root else set())
        for path in sorted(made, key=lambda p: -len(p.parts)):  # folders this run made, left empty, deepest first
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        _CREATED.clear()

    def _cut_log(self) -> None:
        """Take this run's lines out of the log (other runs may be appending to it), and the log itself when this run
        made it, it is left empty and no other run is under way in the folder."""
        import fcntl

        log_file = self.log_file
        if log_file is None or not log_file.exists():
            return
        with open(log_file, "rb+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            data = handle.read()
            for chunk in reversed(self.log_tap.written if self.log_tap is not None else []):
                at = data.rfind(chunk)
                if at >= 0:
                    data = data[:at] + data[at + len(chunk):]
            handle.seek(0)
            handle.write(data)
            handle.truncate()
            # another run under way in the folder has its Hydra records pending beside this run's
            others = [p for p in self.hydra_dir.parent.glob(f"*{PENDING}*") if p != self.hydra_dir] \
                if self.hydra_dir is not None else []
            if not data and self.log_made_here and (self.new_root or not others):
                log_file.unlink()


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


def save_resolved_config(cfg: DictConfig, folder: str | Path, name: str, pending: bool = False) -> Path:
    """Write the fully resolved config next to a run's outputs, ``<name>.config.yaml`` (whole or not at all); with
    ``pending`` under this run's pending name (see :func:`run_record`). Returns the record's published path."""
    from capml.io.atomic import write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.config.yaml"
    write_text(pending_path(path) if pending else path, OmegaConf.to_yaml(cfg, resolve=True))
    return path


def run_hydra(main: Callable[[], object], config_name: str) -> None:
    """Entry-point body: validate overrides, then hand over to the @hydra.main function."""
    check_overrides(config_name, sys.argv[1:])
    track_created_folders()  # from before Hydra makes the run folder: a refused run knows it made it
    main()
