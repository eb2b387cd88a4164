"""capml.io.jsonio: strict JSON, written whole."""

import json

import numpy as np

from capml.io.jsonio import write_json


def test_json_outputs_are_strict_and_atomic(tmp_path):
    path = write_json(tmp_path / "metrics.json", {"mae": float("nan"), "r2": np.float32(0.5), "n": np.int64(3),
                                                  "values": np.array([1.0, np.inf])})
    assert json.loads(path.read_text()) == {"mae": None, "r2": 0.5, "n": 3, "values": [1.0, None]}
    assert "NaN" not in path.read_text() and not list(tmp_path.glob("*.tmp"))
