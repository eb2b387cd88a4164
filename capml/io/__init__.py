"""The dataset contract: extxyz files with REF_ labels, gaps per fidelity and a settings sidecar.

Names are loaded on first use, so that ``python -m capml.io.dataset`` runs the module without importing it twice.
"""

import importlib

_NAMES = {
    "DatasetSettings": "capml.io.dataset",
    "append_frame": "capml.io.dataset",
    "merge_datasets": "capml.io.dataset",
    "read_dataset": "capml.io.dataset",
    "read_settings": "capml.io.dataset",
    "validate_frames": "capml.io.dataset",
    "write_dataset": "capml.io.dataset",
    "write_settings": "capml.io.dataset",
    "grouped_split": "capml.io.split",
}
__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'capml.io' has no attribute '{name}'")
