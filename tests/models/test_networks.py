"""Every network of conf/model/ respects the symmetries of a crystal: atom order, translations, supercells; old
checkpoints' hyperparameters become today's configs."""

import numpy as np
import pytest
import torch

from capml.errors import InputError
from capml.graphs.build import batch_graphs
from capml.models.module import GraphRegressor, upgrade_hparams
from capml.structures.system import load_system
from capml.structures.thermal import uniform_rattle

KWARGS = {"PaperGraphConv": {}, "CGCNN": {"cutoff_A": 5.5, "n_gaussians": 12},
          "GATv2": {"cutoff_A": 5.5, "n_gaussians": 12}}
ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3}
FEATURES = {"mean": [30.0, 70.0, 1.3, 2.3], "std": [15.0, 40.0, 0.3, 0.4]}


def regressor(name, head="linear"):
    torch.manual_seed(0)
    scaler = {"kind": "standard" if head == "linear" else "minmax", "shift": 2.0, "scale": 0.5}
    network = {"_target_": f"capml.models.networks.{name}", "hidden": 16, **KWARGS[name]}
    module = GraphRegressor(network=network, head=head, feature_scaler=FEATURES, target_scaler=scaler,
                            target="gap_x", cutoff_A=5.5, optimizer=ADAM)
    return module.eval()


def predict(module, structures):
    with torch.no_grad():
        return module.predict_physical(batch_graphs(structures)).numpy()


@pytest.fixture(scope="module")
def cell():
    system = load_system("ag3sbri", supercell=(2, 1, 1))
    return uniform_rattle(system.build(system.decorations(1)[0]), 0.1, 0)


@pytest.mark.parametrize("name", sorted(KWARGS))
def test_invariances(name, cell):
    module = regressor(name)
    order = np.random.default_rng(0).permutation(len(cell))
    shifted = cell.copy()
    shifted.positions += [0.7, -1.3, 2.1]
    doubled = cell.repeat((1, 2, 1))
    out = predict(module, [cell, cell[order], shifted, doubled])
    assert np.allclose(out, out[0], atol=1e-5), out


def test_paper_model_layout_and_sigmoid_bounds(cell):
    module = regressor("PaperGraphConv", head="sigmoid")
    net = module.network
    assert [type(b["conv"]).__name__ for b in net.encoder] == ["GraphConv", "GraphConv"]
    assert [m.out_features for m in net.readout if isinstance(m, torch.nn.Linear)] == [16, 1]
    with torch.no_grad():
        for block in net.encoder:  # huge weights drive the raw output far out of range
            block["conv"].lin_rel.weight.mul_(50)
    out = predict(module, [cell])
    assert 2.0 <= out[0] <= 2.5  # min-max range [shift, shift + scale]


def test_unknown_network_optimiser_or_mismatched_head_is_an_input_error():
    minmax = {"kind": "minmax", "shift": 0, "scale": 1}
    common = dict(head="sigmoid", feature_scaler=FEATURES, target="g", cutoff_A=5.5, optimizer=ADAM)
    with pytest.raises(InputError, match="model.network._target_ 'capml.models.networks.SchNetX': cannot import"):
        GraphRegressor(network={"_target_": "capml.models.networks.SchNetX"}, target_scaler=minmax, **common)
    with pytest.raises(InputError, match="model.network._target_ 'os.system': not a torch.nn"):
        GraphRegressor(network={"_target_": "os.system"}, target_scaler=minmax, **common)
    with pytest.raises(InputError, match="model.network: no _target_"):
        GraphRegressor(network={"hidden": 8}, target_scaler=minmax, **common)
    with pytest.raises(InputError, match="head 'sigmoid' needs 'minmax'"):
        GraphRegressor(network={"_target_": "capml.models.networks.PaperGraphConv"},
                       target_scaler={"kind": "standard", "shift": 0, "scale": 1}, **common)
    module = GraphRegressor(network={"_target_": "capml.models.networks.PaperGraphConv"}, target_scaler=minmax,
                            **{**common, "scheduler": {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR",
                                                       "factor": 0.5}})
    with pytest.raises(InputError, match="model.scheduler: .*factor"):
        module.configure_optimizers()


@pytest.mark.parametrize("kind, expected", [
    ("plateau", {"_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau", "factor": 0.5, "patience": 7}),
    ("cosine", {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "T_max": 40}),
    ("none", None)])
def test_old_hyperparameters_become_configs_that_train_the_same_way(kind, expected):
    old = {"network": {"name": "cgcnn", "hidden": 8}, "head": "linear", "lr": 3e-3, "weight_decay": 1e-5,
           "scheduler": kind, "scheduler_patience": 7, "max_epochs": 40, "target": "g"}
    new = upgrade_hparams(old)
    assert new["network"] == {"_target_": "capml.models.networks.CGCNN", "hidden": 8}
    assert new["optimizer"] == {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 3e-3, "weight_decay": 1e-5}
    assert new["scheduler"] == (expected and {**expected, "_partial_": True})
    assert not {"lr", "weight_decay", "scheduler_patience", "max_epochs"} & set(new)
    assert upgrade_hparams(new) == new
