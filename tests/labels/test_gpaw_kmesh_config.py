"""labels=gpaw_kmesh, the setting chosen by the k-point study, is the setting of the bundled mesh labels: a new label
run with it can be merged with data/ag3sbri/kconv_k2.extxyz and kmesh_k2.extxyz, and never with the Γ-only sets."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from capml.cli import CONFIG_DIR, ROOT
from capml.errors import InputError
from capml.io.contract import DatasetSettings, read_settings


def labeller(*overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="simulate", overrides=list(overrides))
    return instantiate(cfg.labels.labeller), cfg.labels.subsets


def test_the_kmesh_labeller_writes_the_bundled_mesh_labels_settings():
    mesh, subsets = labeller("labels=gpaw_kmesh")
    assert subsets.hse06 == 0  # no hybrid gap on the mesh unless asked for
    bundled = read_settings(ROOT / "data" / "ag3sbri" / "kconv_k2.extxyz").fidelities["pbesol"]
    assert mesh.settings()["pbesol"] == bundled
    gamma, _ = labeller("labels=gpaw")
    assert gamma.settings()["pbesol"] == read_settings(ROOT / "data" / "ag3sbri" / "dataset.extxyz").fidelities["pbesol"]
    with pytest.raises(InputError, match="label settings for fidelity 'pbesol' differ"):
        DatasetSettings({"pbesol": mesh.settings()["pbesol"]}).merged_with(
            DatasetSettings({"pbesol": gamma.settings()["pbesol"]}), where="test")
