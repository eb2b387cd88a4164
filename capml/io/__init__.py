"""The dataset contract: extxyz files with REF_ labels, gaps per fidelity and a settings sidecar."""

from capml.io.dataset import (
    DatasetSettings,
    append_frame,
    merge_datasets,
    read_dataset,
    read_settings,
    validate_frames,
    write_dataset,
    write_settings,
)
from capml.io.split import grouped_split

__all__ = [
    "DatasetSettings",
    "append_frame",
    "grouped_split",
    "merge_datasets",
    "read_dataset",
    "read_settings",
    "validate_frames",
    "write_dataset",
    "write_settings",
]
