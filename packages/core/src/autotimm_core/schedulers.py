"""Learning-rate schedulers: torch.optim.lr_scheduler and timm.scheduler under one name space.

``create_scheduler`` returns the dict Lightning's ``configure_optimizers`` expects, with the
stepping interval chosen per scheduler and run-length defaults (``T_max``, ``total_steps``...)
filled in from the run when the caller leaves them out.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import timm.scheduler as tsched
import torch
import torch.optim.lr_scheduler as lrs

from autotimm_core.monitor import monitor_mode
from autotimm_core.registry import Registry


@dataclass(frozen=True)
class SchedulerInfo:
    """A registry entry: how to build a scheduler and how Lightning must step it."""

    name: str
    cls: type
    interval: str  # "epoch" or "step"
    source: str  # "torch" or "timm"
    needs_metric: bool = False
    defaults: dict[str, Any] = field(default_factory=dict)


def _milestones(epochs: int) -> list[int]:
    # COCO-style drops at 2/3 and 11/12 of the run (8 and 11 of 12 epochs).
    return sorted({max(1, round(epochs * 2 / 3)), max(1, round(epochs * 11 / 12))})


# Defaults that depend on the run length: ``n`` is the number of scheduler steps in the run
# (epochs for interval "epoch", optimizer steps for interval "step").
_RUN_DEFAULTS = {
    "cosineannealinglr": lambda n, lr: {"T_max": n},
    "cosineannealingwarmrestarts": lambda n, lr: {"T_0": max(1, n // 3)},
    "steplr": lambda n, lr: {"step_size": max(1, n // 3)},
    "multisteplr": lambda n, lr: {"milestones": _milestones(n)},
    "onecyclelr": lambda n, lr: {"total_steps": n, "max_lr": lr},
    "cycliclr": lambda n, lr: {"base_lr": lr / 10, "max_lr": lr, "step_size_up": max(1, n // 10)},
    "exponentiallr": lambda n, lr: {"gamma": 0.95},
    "polynomiallr": lambda n, lr: {"total_iters": n},
    "linearlr": lambda n, lr: {"total_iters": n},
    "constantlr": lambda n, lr: {"total_iters": max(1, n // 10)},
    "cosinelrscheduler": lambda n, lr: {"t_initial": n},
    "tanhlrscheduler": lambda n, lr: {"t_initial": n},
    "polylrscheduler": lambda n, lr: {"t_initial": n},
    # timm's step schedulers default to decay_rate=1.0 (no decay at all); 0.1 is torch's gamma.
    "steplrscheduler": lambda n, lr: {"decay_t": max(1, n // 3), "decay_rate": 0.1},
    "multisteplrscheduler": lambda n, lr: {"decay_t": _milestones(n), "decay_rate": 0.1},
    # the decay phase is the last 20% of the run, timm's create_scheduler_v2 default
    "wsdlrscheduler": lambda n, lr: {"t_initial": n, "decay_t": max(1, round(n * 0.2))},
}

#: Short names used in the guide and in configs, and upstream AutoTimm's spellings.
ALIASES = {
    "cosine": "cosineannealinglr",
    "cosine_restarts": "cosineannealingwarmrestarts",
    "cosine_with_restarts": "cosineannealingwarmrestarts",
    "multistep": "multisteplr",
    "step": "steplr",
    "onecycle": "onecyclelr",
    "plateau": "reducelronplateau",
    "exponential": "exponentiallr",
    "linear": "linearlr",
    "poly": "polynomiallr",
    "cyclic": "cycliclr",
}

# Composite schedulers (they take other schedulers) and callable-based ones are left to users
# writing their own configure_optimizers: they cannot be named in a config. timm's
# PlateauLRScheduler is deprecated in timm and does not save its state in checkpoints (a resumed
# run restarts its patience): torch's "reducelronplateau" ("plateau") does both.
_EXCLUDED = {
    "lrscheduler",
    "sequentiallr",
    "chainedscheduler",
    "lambdalr",
    "multiplicativelr",
    "plateaulrscheduler",
}
_STEP_INTERVAL = {"onecyclelr", "cycliclr"}


def _load_schedulers(registry: Registry[SchedulerInfo]) -> None:
    # torch's public schedulers, from lr_scheduler.__all__ (the base classes are excluded).
    for attr in lrs.__all__:
        cls = getattr(lrs, attr, None)
        key = attr.lower()
        if key in _EXCLUDED or not isinstance(cls, type):
            continue
        if issubclass(cls, (lrs.LRScheduler, lrs.ReduceLROnPlateau)):
            info = SchedulerInfo(
                key,
                cls,
                "step" if key in _STEP_INTERVAL else "epoch",
                "torch",
                needs_metric=cls is lrs.ReduceLROnPlateau,
            )
            registry.register(key, info)
    # timm's schedulers are the subclasses of its base Scheduler defined in timm.scheduler
    # (timm.scheduler has no __all__); a user's own subclass elsewhere is not picked up.
    for cls in tsched.scheduler.Scheduler.__subclasses__():
        key = cls.__name__.lower()
        if cls.__module__.startswith("timm.scheduler.") and key not in _EXCLUDED:
            info = SchedulerInfo(key, cls, "epoch", "timm")
            registry.register(key, info)
    for alias, name in ALIASES.items():
        registry.add_alias(alias, name)


#: Every scheduler that can be named, with the aliases of ``ALIASES`` (case-insensitive).
SCHEDULERS: Registry[SchedulerInfo] = Registry(
    "scheduler", "autotimm.list_schedulers", loader=_load_schedulers
)


def list_schedulers() -> dict[str, list[str]]:
    """Scheduler names by source: ``{"torch": [...], "timm": [...]}``, lower-case, sorted.

    Each list holds the class names (``"cosineannealinglr"``) and the aliases that resolve to
    one of them: ``cosine``, ``cosine_restarts`` / ``cosine_with_restarts``, ``multistep``,
    ``step``, ``onecycle``, ``plateau``, ``exponential``, ``linear``, ``poly``, ``cyclic`` (all
    torch schedulers). Every listed name works as ``scheduler=...``.
    """
    out: dict[str, list[str]] = {"torch": [], "timm": []}
    for name, info in SCHEDULERS.items():
        out[info.source].append(name)
    for alias, name in SCHEDULERS.aliases().items():
        out[SCHEDULERS.get(name).source].append(alias)
    return {k: sorted(v) for k, v in out.items()}


def resolve_scheduler_name(name: str) -> SchedulerInfo:
    """Registry entry for a name or alias (case-insensitive); ValueError listing choices if unknown."""
    return SCHEDULERS.get(name)


def create_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    total_steps: int | None = None,
    total_epochs: int | None = None,
    monitor: str = "val/loss",
    **kwargs: Any,
) -> dict[str, Any]:
    """Create a scheduler by name and wrap it as Lightning's ``lr_scheduler`` config dict.

    Args:
        name: name or alias (see ``list_schedulers()``), e.g. ``"cosine"`` or ``"multisteplr"``.
        optimizer: the optimizer to schedule.
        total_steps: optimizer steps in the whole run; fills step-based defaults
            (``OneCycleLR.total_steps``).
        total_epochs: epochs in the run; fills epoch-based defaults (``CosineAnnealingLR.T_max``,
            ``MultiStepLR.milestones`` at 2/3 and 11/12 of the run, ``StepLR.step_size``).
        monitor: metric that plateau schedulers watch. Default ``"val/loss"``.
        **kwargs: scheduler arguments; given values always win over the filled-in defaults.
            ``interval`` ("epoch"/"step") and ``frequency`` are taken out and set how Lightning
            steps the scheduler. Without ``interval``, an epoch scheduler whose length is filled
            in runs per step when only ``total_steps`` is known (a ``max_steps`` run).

    Returns:
        ``{"scheduler": ..., "interval": ..., "frequency": ..., "name": ...}`` plus ``"monitor"``
        for schedulers that need a metric.
    """
    info = resolve_scheduler_name(name)
    kwargs = dict(kwargs)
    interval = kwargs.pop("interval", None)
    if interval is None:
        interval = info.interval
        # A run bounded by steps alone (Trainer(max_steps=N), no max_epochs) has no epoch count
        # to fit an epoch schedule to: the schedule then runs over the steps.
        if (
            interval == "epoch"
            and total_epochs is None
            and total_steps
            and info.name in _RUN_DEFAULTS
        ):
            interval = "step"
    frequency = kwargs.pop("frequency", 1)
    monitor = kwargs.pop("monitor", monitor)
    if interval not in ("epoch", "step"):
        raise ValueError(f"scheduler interval must be 'epoch' or 'step', got {interval!r}")
    run_length = total_steps if interval == "step" else total_epochs
    if run_length is not None and run_length > 0 and info.name in _RUN_DEFAULTS:
        lr = optimizer.param_groups[0]["lr"]
        for key, value in _RUN_DEFAULTS[info.name](int(run_length), lr).items():
            kwargs.setdefault(key, value)
    sig = inspect.signature(info.cls.__init__)
    if info.source == "timm" and "t_in_epochs" in sig.parameters:
        # timm schedulers ignore step_update() unless told they are not stepped per epoch.
        kwargs.setdefault("t_in_epochs", interval == "epoch")
    if info.needs_metric:
        # ReduceLROnPlateau's "min"/"max" follows the monitored name, by the rule that
        # checkpoint selection uses too (val/loss: min, val/accuracy: max).
        kwargs.setdefault("mode", monitor_mode(monitor))

    accepted = set(sig.parameters) - {"self", "optimizer"}
    has_var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    unknown = set(kwargs) - accepted
    if unknown and not has_var_kw:
        raise ValueError(
            f"scheduler '{info.name}' got unknown argument(s) {sorted(unknown)}; "
            f"it accepts: {', '.join(sorted(accepted))}"
        )
    required = [
        p.name
        for p in sig.parameters.values()
        if p.default is p.empty
        and p.name not in ("self", "optimizer")
        and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    missing = [r for r in required if r not in kwargs]
    if missing:
        raise ValueError(
            f"scheduler '{info.name}' needs {missing} in scheduler_kwargs (they could not be "
            "filled in from the run length: pass total_steps/total_epochs or set them)."
        )
    scheduler = info.cls(optimizer, **kwargs)
    config: dict[str, Any] = {
        "scheduler": scheduler,
        "interval": interval,
        "frequency": frequency,
        "name": f"lr-{info.name}",
    }
    if info.needs_metric:
        config["monitor"] = monitor
    return config


def is_timm_scheduler(scheduler: Any) -> bool:
    """True for timm schedulers, which Lightning cannot step by itself (see BaseTask.lr_scheduler_step)."""
    return isinstance(scheduler, tsched.scheduler.Scheduler)
