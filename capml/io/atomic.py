"""One way to replace a file whole: write a temporary file beside it, then rename it over the target.

A kill mid-write leaves the old file (or none), never half a file that jams the next run, and the temporary name
is unique to the writing process and thread, so two writers of one file (parallel sweep jobs building one graph
cache, two label shards merging) each replace it whole instead of renaming each other's half-written file.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def temporary_name(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on leaving the block without an error it replaces ``path``; on an error
    it is removed and ``path`` is untouched."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """``path.write_text(text)``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
