"""The records of a run and what it made: its resolved config (``<stage>.config.yaml``, Hydra's copy of it), kept
under a pending name until the run ends, and the folders and log lines it made, so that a run refused for bad input
leaves nothing behind and never touches another run's records."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from capml.errors import InputError

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


def resolved_record(cfg: DictConfig) -> dict:
    """The config as its record holds it: resolved, with every path inside the capml checkout named
    ``capml_root:<relative>`` (:mod:`capml.io.paths`), so that the record of a run made in one clone reads the same
    in another; other values as they are."""
    from capml.io.paths import ROOT, ROOT_PREFIX

    root = str(ROOT)

    def portable(value):
        if isinstance(value, dict):
            return {k: portable(v) for k, v in value.items()}
        if isinstance(value, list):
            return [portable(v) for v in value]
        if isinstance(value, str) and (value == root or value.startswith(root + os.sep)):
            return ROOT_PREFIX + os.path.relpath(value, root).replace(os.sep, "/").removeprefix(".")
        return value

    container = cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=True)
    return portable(container)


def save_resolved_config(cfg: DictConfig, folder: str | Path, name: str, pending: bool = False) -> Path:
    """Write the fully resolved config next to a run's outputs, ``<name>.config.yaml`` (whole or not at all, paths in
    the checkout portable: :func:`resolved_record`); with ``pending`` under this run's pending name (see
    :func:`run_record`). Returns the record's published path."""
    from capml.io.atomic import write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.config.yaml"
    write_text(pending_path(path) if pending else path, OmegaConf.to_yaml(OmegaConf.create(resolved_record(cfg))))
    return path
