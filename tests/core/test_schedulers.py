import pytest
import torch
import torch.nn as nn
from timm.scheduler import CosineLRScheduler

from autotimm_core import create_scheduler, list_schedulers, resolve_scheduler_name
from autotimm_core.schedulers import is_timm_scheduler

SPEC_NAMES = [
    "cosineannealinglr",
    "cosineannealingwarmrestarts",
    "multisteplr",
    "onecyclelr",
    "reducelronplateau",
    "steplr",
]


def _opt(lr=0.1):
    return torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=lr)


def test_list_schedulers_has_spec_names():
    names = list_schedulers()
    assert set(names) == {"torch", "timm"}
    assert set(SPEC_NAMES) <= set(names["torch"])
    assert "cosinelrscheduler" in names["timm"]
    assert "sequentiallr" not in names["torch"]  # composite: needs other schedulers


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_every_spec_scheduler_builds_with_run_defaults(name):
    config = create_scheduler(name, _opt(), total_steps=100, total_epochs=10)
    assert config["interval"] == ("step" if name == "onecyclelr" else "epoch")
    assert ("monitor" in config) == (name == "reducelronplateau")


@pytest.mark.parametrize(
    ("alias", "cls"),
    [
        ("cosine", torch.optim.lr_scheduler.CosineAnnealingLR),
        ("multistep", torch.optim.lr_scheduler.MultiStepLR),
        ("step", torch.optim.lr_scheduler.StepLR),
        ("onecycle", torch.optim.lr_scheduler.OneCycleLR),
        ("plateau", torch.optim.lr_scheduler.ReduceLROnPlateau),
        ("COSINE", torch.optim.lr_scheduler.CosineAnnealingLR),
    ],
)
def test_aliases(alias, cls):
    config = create_scheduler(alias, _opt(), total_steps=50, total_epochs=5)
    assert type(config["scheduler"]) is cls


def test_run_length_defaults_are_filled_and_user_values_win():
    cfg = create_scheduler("cosine", _opt(), total_epochs=12)
    assert cfg["scheduler"].T_max == 12
    cfg = create_scheduler("cosineannealinglr", _opt(), total_epochs=12, T_max=50, eta_min=1e-6)
    assert cfg["scheduler"].T_max == 50 and cfg["scheduler"].eta_min == 1e-6
    cfg = create_scheduler("multistep", _opt(), total_epochs=12)
    assert sorted(cfg["scheduler"].milestones) == [8, 11]
    cfg = create_scheduler("onecycle", _opt(lr=0.3), total_steps=40)
    assert cfg["scheduler"].total_steps == 40
    assert cfg["scheduler"].optimizer.param_groups[0]["max_lr"] == 0.3


def test_cosine_reaches_eta_min_at_the_end():
    opt = _opt(lr=1.0)
    sched = create_scheduler("cosine", opt, total_epochs=4)["scheduler"]
    for _ in range(4):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)


def test_interval_override_and_plateau_monitor():
    cfg = create_scheduler("cosine", _opt(), total_steps=80, total_epochs=4, interval="step")
    assert cfg["interval"] == "step" and cfg["scheduler"].T_max == 80
    cfg = create_scheduler("plateau", _opt(), monitor="val/accuracy")
    assert cfg["monitor"] == "val/accuracy" and cfg["scheduler"].mode == "max"
    assert create_scheduler("plateau", _opt())["scheduler"].mode == "min"


def test_steps_only_run_schedules_over_the_steps():
    # Trainer(max_steps=N) without max_epochs: no epoch count, so an epoch schedule runs per step
    cfg = create_scheduler("cosine", _opt(), total_steps=40)
    assert cfg["interval"] == "step" and cfg["scheduler"].T_max == 40
    cfg = create_scheduler("multistep", _opt(), total_steps=12)
    assert cfg["interval"] == "step" and sorted(cfg["scheduler"].milestones) == [8, 11]
    # an explicit interval is the user's: no switch, and the missing length is named
    with pytest.raises(ValueError, match=r"needs \['T_max'\]"):
        create_scheduler("cosine", _opt(), total_steps=40, interval="epoch")


def test_timm_scheduler():
    cfg = create_scheduler("cosinelrscheduler", _opt(), total_epochs=10, warmup_t=2)
    assert isinstance(cfg["scheduler"], CosineLRScheduler)
    assert cfg["scheduler"].t_initial == 10


def test_unknown_scheduler_lists_choices():
    with pytest.raises(ValueError, match=r"Unknown scheduler 'cosin'.*Did you mean: .*cosine"):
        create_scheduler("cosin", _opt())


def test_missing_required_argument_is_named():
    with pytest.raises(ValueError, match=r"'steplr' needs \['step_size'\]"):
        create_scheduler("steplr", _opt())


def test_unknown_scheduler_argument():
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['T_maxx'\].*T_max"):
        create_scheduler("cosine", _opt(), total_epochs=3, T_maxx=3)


LISTED = [(src, n) for src, names in list_schedulers().items() for n in names]


@pytest.mark.parametrize(("source", "name"), LISTED, ids=[n for _, n in LISTED])
def test_every_listed_scheduler_builds_from_the_run_length_and_steps(source, name):
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1, momentum=0.9)
    config = create_scheduler(name, opt, total_steps=20, total_epochs=4)
    sched = config["scheduler"]
    assert resolve_scheduler_name(name).source == source
    assert is_timm_scheduler(sched) == (source == "timm")
    for t in range(1, 4):
        opt.step()
        if is_timm_scheduler(sched):
            sched.step_update(t) if config["interval"] == "step" else sched.step(t)
        elif "monitor" in config:
            sched.step(1.0)
        else:
            sched.step()
        lr = opt.param_groups[0]["lr"]
        assert 0 <= lr < float("inf")


def test_aliases_are_listed_under_the_source_they_resolve_to():
    torch_names = list_schedulers()["torch"]
    for alias in ("cosine", "multistep", "step", "onecycle", "plateau", "cosine_with_restarts"):
        assert alias in torch_names
    assert "cosine" not in list_schedulers()["timm"]


def test_upstream_cosine_with_restarts_spelling():
    config = create_scheduler("cosine_with_restarts", _opt(), total_epochs=9)
    assert type(config["scheduler"]) is torch.optim.lr_scheduler.CosineAnnealingWarmRestarts
    assert config["scheduler"].T_0 == 3


@pytest.mark.parametrize(
    ("monitor", "mode"),
    [
        ("val/loss", "min"),
        ("val/loss_bbox_regression", "min"),
        ("val/mse", "min"),
        ("val/accuracy", "max"),
        ("val/map_50", "max"),
        ("val/f1", "max"),
    ],
)
def test_plateau_mode_follows_the_shared_monitor_rule(monitor, mode):
    config = create_scheduler("reducelronplateau", _opt(), monitor=monitor)
    assert config["scheduler"].mode == mode and config["monitor"] == monitor
    # an explicit mode wins
    other = "max" if mode == "min" else "min"
    assert (
        create_scheduler("plateau", _opt(), monitor=monitor, mode=other)["scheduler"].mode == other
    )


def test_timm_step_schedulers_decay_by_default_and_wsd_fills_its_decay_phase():
    opt = _opt(lr=1.0)
    sched = create_scheduler("steplrscheduler", opt, total_epochs=9)["scheduler"]
    sched.step(3)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    wsd = create_scheduler("wsdlrscheduler", _opt(), total_epochs=10)["scheduler"]
    assert wsd.t_initial == 10 and wsd.decay_t == 2


def test_deprecated_timm_plateau_is_not_offered():
    assert "plateaulrscheduler" not in list_schedulers()["timm"]
    with pytest.raises(ValueError, match=r"Unknown scheduler 'plateaulrscheduler'.*plateau"):
        resolve_scheduler_name("plateaulrscheduler")
