"""A CSV table that grows one row at a time, so that a long, resumable job (one DFT calculation per row) loses
nothing when it is killed and a rerun does only the rows it lacks."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping, Sequence


class RowLog:
    """``path`` with columns ``fields``; a row is appended (header first) and flushed as soon as it is known."""

    def __init__(self, path: str | Path, fields: Sequence[str]):
        self.path = Path(path)
        self.fields = list(fields)

    def rows(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with self.path.open(newline="") as f:
            return list(csv.DictReader(f))

    def done(self, *key: str) -> set[tuple[str, ...]]:
        """The ``key`` columns of the rows written so far, as tuples of strings."""
        return {tuple(row[k] for k in key) for row in self.rows()}

    def append(self, row: Mapping) -> None:
        new = not self.path.exists()
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields)
            if new:
                writer.writeheader()
            writer.writerow(dict(row))
