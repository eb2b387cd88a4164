"""JSON files the way every capml output is written: strict JSON (NaN and inf become null, numpy values plain
numbers) through a temporary file and a rename, so a kill never leaves half a file that jams the next run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from capml.io.atomic import write_text


def plain(value):
    """``value`` with NaN/inf as None, numpy scalars and arrays as Python numbers and lists, paths as text."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


def write_json(path: str | Path, value, indent: int | None = 1, **kwargs) -> Path:
    return write_text(path, json.dumps(plain(value), indent=indent, allow_nan=False, **kwargs))
