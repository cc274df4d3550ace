import pytest
import torch
import torch.nn as nn

from autotimm_core import create_optimizer, list_optimizers


def _model():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))


def test_list_optimizers_by_source():
    opts = list_optimizers()
    assert set(opts) == {"torch", "timm"}
    assert {"adamw", "sgd", "adam"} <= set(opts["torch"])
    assert {"adamp", "lamb", "lion", "madgrad"} <= set(opts["timm"])
    assert not set(opts["torch"]) & set(opts["timm"])
    assert all(n == n.lower() for n in opts["torch"] + opts["timm"])


@pytest.mark.parametrize("name", ["adamw", "AdamW", "sgd", "adamp", "lamb", "lion"])
def test_create_optimizer_by_name(name):
    model = nn.Linear(4, 2)
    opt = create_optimizer(name, model, lr=0.01, weight_decay=0.1)
    assert all(g["lr"] == 0.01 for g in opt.param_groups)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()


def test_torch_name_creates_torch_class():
    assert type(create_optimizer("adamw", nn.Linear(2, 2))) is torch.optim.AdamW
    assert type(create_optimizer("sgd", nn.Linear(2, 2), momentum=0.9)) is torch.optim.SGD


def test_no_weight_decay_on_bias_and_norm():
    model = _model()
    model(torch.randn(1, 3, 8, 8))
    opt = create_optimizer("adamw", model, lr=1e-3, weight_decay=0.05)
    decay_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decay_of[id(model[0].weight)] == 0.05
    assert decay_of[id(model[3].weight)] == 0.05
    assert decay_of[id(model[0].bias)] == 0.0
    assert decay_of[id(model[1].weight)] == 0.0  # BatchNorm
    assert decay_of[id(model[3].bias)] == 0.0


def test_decay_split_also_for_plain_parameter_lists():
    model = nn.Linear(3, 3)
    opt = create_optimizer("sgd", model.parameters(), lr=0.1, weight_decay=0.01)
    decay_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decay_of[id(model.weight)] == 0.01 and decay_of[id(model.bias)] == 0.0


def test_frozen_parameters_are_left_out():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    for p in model[0].parameters():
        p.requires_grad = False
    opt = create_optimizer("adamw", model, weight_decay=0.1)
    ids = {id(p) for g in opt.param_groups for p in g["params"]}
    assert ids == {id(p) for p in model[1].parameters()}


def test_unknown_optimizer_lists_choices():
    with pytest.raises(ValueError, match=r"Unknown optimizer 'adamx'.*Did you mean: .*adam"):
        create_optimizer("adamx", nn.Linear(2, 2))


def test_unknown_optimizer_argument_names_valid_ones():
    with pytest.raises(
        ValueError, match=r"optimizer 'sgd' got unknown argument\(s\) \['betas'\].*momentum"
    ):
        create_optimizer("sgd", nn.Linear(2, 2), betas=(0.9, 0.99))
