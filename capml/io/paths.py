"""Paths in the records capml writes (ensemble.json, splits.json, metrics.json, round.json, checkpoints): a file
inside the capml checkout is named relative to it, ``capml_root:<relative path>``, so a record made on one machine
names the same file in any clone; a file outside it keeps its absolute path. :func:`resolve_path` reads either back."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the capml checkout (capml/io/paths.py -> its root)
ROOT_PREFIX = "capml_root:"


def portable_path(path: str | Path) -> str:
    """``capml_root:<relative>`` for a file inside the checkout, the absolute path otherwise (a relative ``path`` is
    taken from the working folder); a name that already has the prefix is kept."""
    if str(path).startswith(ROOT_PREFIX):
        return str(path)
    path = Path(path).resolve()
    try:
        return ROOT_PREFIX + path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def resolve_path(name: str | Path) -> Path:
    """The file a record names: ``capml_root:<relative>`` inside this checkout, any other path as it is."""
    name = str(name)
    return ROOT / name[len(ROOT_PREFIX):] if name.startswith(ROOT_PREFIX) else Path(name)
