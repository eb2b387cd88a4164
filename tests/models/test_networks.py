"""Every registered network respects the symmetries of a crystal: atom order, translations, supercells."""

import numpy as np
import pytest
import torch

from capml.errors import InputError
from capml.graphs.build import batch_graphs
from capml.models.module import GraphRegressor
from capml.models.networks import MODELS, build_network
from capml.structures.system import load_system
from capml.structures.thermal import uniform_rattle

KWARGS = {"paper": {}, "cgcnn": {"cutoff_A": 5.5, "n_gaussians": 12}, "gatv2": {"cutoff_A": 5.5, "n_gaussians": 12}}


def regressor(name, head="linear"):
    torch.manual_seed(0)
    scaler = {"kind": "standard" if head == "linear" else "minmax", "shift": 2.0, "scale": 0.5}
    module = GraphRegressor(network={"name": name, "hidden": 16, **KWARGS[name]}, head=head,
                            feature_scaler={"mean": [30.0, 70.0, 1.3, 2.3], "std": [15.0, 40.0, 0.3, 0.4]},
                            target_scaler=scaler, target="gap_x", cutoff_A=5.5)
    return module.eval()


def predict(module, structures):
    with torch.no_grad():
        return module.predict_physical(batch_graphs(structures)).numpy()


@pytest.fixture(scope="module")
def cell():
    system = load_system("ag3sbri", supercell=(2, 1, 1))
    return uniform_rattle(system.build(system.decorations(1)[0]), 0.1, 0)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_invariances(name, cell):
    module = regressor(name)
    order = np.random.default_rng(0).permutation(len(cell))
    shifted = cell.copy()
    shifted.positions += [0.7, -1.3, 2.1]
    doubled = cell.repeat((1, 2, 1))
    out = predict(module, [cell, cell[order], shifted, doubled])
    assert np.allclose(out, out[0], atol=1e-5), out


def test_paper_model_layout_and_sigmoid_bounds(cell):
    module = regressor("paper", head="sigmoid")
    net = module.network
    assert [type(b["conv"]).__name__ for b in net.encoder] == ["GraphConv", "GraphConv"]
    assert [m.out_features for m in net.readout if isinstance(m, torch.nn.Linear)] == [16, 1]
    with torch.no_grad():
        for block in net.encoder:  # huge weights drive the raw output far out of range
            block["conv"].lin_rel.weight.mul_(50)
    out = predict(module, [cell])
    assert 2.0 <= out[0] <= 2.5  # min-max range [shift, shift + scale]


def test_unknown_model_or_mismatched_head_is_an_input_error():
    with pytest.raises(InputError, match="model.name 'schnetx'"):
        build_network("schnetx", in_features=4)
    with pytest.raises(InputError, match="head 'sigmoid' needs 'minmax'"):
        GraphRegressor(network={"name": "paper"}, head="sigmoid", feature_scaler={"mean": [0] * 4, "std": [1] * 4},
                       target_scaler={"kind": "standard", "shift": 0, "scale": 1}, target="g", cutoff_A=5.5)
