import pytest
import torch
import torch.nn as nn

from autotimm_core import create_optimizer, list_optimizers, resolve_optimizer_name
from autotimm_core.optimizers import UNSUPPORTED_OPTIMIZERS

LISTED = [n for names in list_optimizers().values() for n in names]


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


def _cnn():
    # conv (no bias, as before a norm) + BN + linear: 4-D, 1-D and 2-D parameters, both groups
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 3),
    )


@pytest.mark.parametrize("name", LISTED)
def test_every_listed_optimizer_trains_the_task_parameter_groups(name):
    """Built as BaseTask builds it (decay / no-decay groups), two steps change every weight."""
    model = _cnn()
    before = [p.detach().clone() for p in model.parameters()]
    opt = create_optimizer(name, model, lr=1e-2, weight_decay=1e-4)
    assert len(opt.param_groups) == 2  # weights decayed, biases and norm parameters not
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for (pname, p), old in zip(model.named_parameters(), before):
        assert torch.isfinite(p).all(), f"{name}: {pname} is not finite"
        assert not torch.equal(p, old), f"{name}: {pname} did not change"


def test_optimizers_that_cannot_train_parameter_groups_are_not_listed_and_say_why():
    assert set(UNSUPPORTED_OPTIMIZERS) == {
        "lbfgs",
        "sparseadam",
        "adahessian",
        "kron",
        "kronc",
        "kronw",
    }
    assert not set(UNSUPPORTED_OPTIMIZERS) & set(LISTED)
    with pytest.raises(ValueError, match=r"optimizer 'LBFGS' cannot train .*closure"):
        create_optimizer("LBFGS", nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"'sparseadam' cannot train .*sparse gradients"):
        resolve_optimizer_name("sparseadam")
    with pytest.raises(ValueError, match=r"'adahessian' cannot train .*create_graph=True"):
        resolve_optimizer_name("adahessian")
    with pytest.raises(ValueError, match=r"'kronw' cannot train .*opt_einsum"):
        resolve_optimizer_name("kronw")


def test_muon_is_timms_which_also_trains_1d_parameters():
    # torch.optim.Muon only takes 2-D parameters; timm's falls back to AdamW for 1-D ones
    assert "muon" in list_optimizers()["timm"] and "muon" not in list_optimizers()["torch"]
    assert type(create_optimizer("muon", _cnn())).__module__.startswith("timm.optim")


def test_resolve_optimizer_name_without_building_anything():
    assert resolve_optimizer_name("AdamW") == "adamw"
    assert resolve_optimizer_name("adam_w") == "adamw"
    assert resolve_optimizer_name("lamb") == "lamb"
    with pytest.raises(ValueError, match=r"Unknown optimizer 'lamd'.*Did you mean: lamb"):
        resolve_optimizer_name("lamd")
    with pytest.raises(ValueError, match=r"See autotimm.list_optimizers\(\) for all \d+ names"):
        resolve_optimizer_name("nothing_like_it")
