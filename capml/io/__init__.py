"""Datasets on disk: the contract (:mod:`capml.io.contract`: REF_ labels, gaps per fidelity, a settings sidecar),
structure files (:mod:`capml.io.extxyz`), shard files of label runs (:mod:`capml.io.shards`), splits, atomic writes,
the records of a run (:mod:`capml.io.records`), tables written row by row (:mod:`capml.io.rows`) and the
maintenance command ``python -m capml.io.dataset``.

Names are loaded on first use, so that importing one small module of the package (atomic writes, JSON) loads no
ASE, and ``python -m capml.io.dataset`` runs the module without importing it twice.
"""

import importlib

_NAMES = {
    "DatasetSettings": "capml.io.contract",
    "merge_datasets": "capml.io.contract",
    "read_dataset": "capml.io.contract",
    "read_settings": "capml.io.contract",
    "validate_frames": "capml.io.contract",
    "write_dataset": "capml.io.contract",
    "write_settings": "capml.io.contract",
    "append_frame": "capml.io.extxyz",
    "read_structures": "capml.io.extxyz",
    "grouped_split": "capml.io.split",
}
__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'capml.io' has no attribute '{name}'")
