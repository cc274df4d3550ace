"""Optimizers: torch.optim and timm.optim under one lower-case name space."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn as nn
from timm.optim import create_optimizer_v2, param_groups_weight_decay
from timm.optim import list_optimizers as _timm_list_optimizers

from autotimm_core._imports import is_available
from autotimm_core._naming import unknown_name_error

# timm lists optimizers whose implementation lives in optional packages; list them only when
# that package is importable, so that every listed name can actually be created.
_TIMM_OPTIONAL_PREFIXES = {"bnb": "bitsandbytes", "fused": "apex"}


@functools.cache
def _torch_optimizers() -> dict[str, type[torch.optim.Optimizer]]:
    found = {}
    for attr in dir(torch.optim):
        cls = getattr(torch.optim, attr)
        is_optimizer = isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)
        if is_optimizer and cls is not torch.optim.Optimizer:
            found[attr.lower()] = cls
    return found


@functools.cache
def _timm_optimizers() -> list[str]:
    names = []
    for name in _timm_list_optimizers():
        needs = next(
            (pkg for pre, pkg in _TIMM_OPTIONAL_PREFIXES.items() if name.startswith(pre)), None
        )
        if needs is None or is_available(needs):
            names.append(name)
    torch_names = set(_torch_optimizers())
    return sorted(n for n in names if n not in torch_names)


def list_optimizers() -> dict[str, list[str]]:
    """Optimizer names by source: ``{"torch": [...], "timm": [...]}``, lower-case.

    A name in both torch and timm (``adamw``, ``sgd``...) is listed under ``torch`` and creates
    the torch implementation.
    """
    return {"torch": sorted(_torch_optimizers()), "timm": _timm_optimizers()}


def _param_groups(
    params: nn.Module | Iterable[Any], weight_decay: float, no_decay_norm_and_bias: bool
) -> list[dict[str, Any]]:
    """Split parameters into a decayed and a non-decayed group, as timm does.

    Biases and normalisation weights (every parameter with fewer than 2 dimensions), and names the
    model lists in ``no_weight_decay()``, get no weight decay.
    """
    if isinstance(params, nn.Module):
        if not no_decay_norm_and_bias or weight_decay == 0:
            trainable = [p for p in params.parameters() if p.requires_grad]
            return [{"params": trainable, "weight_decay": weight_decay}]
        skip = set(params.no_weight_decay()) if hasattr(params, "no_weight_decay") else set()
        return param_groups_weight_decay(params, weight_decay, no_weight_decay_list=skip)
    params = list(params)
    if params and isinstance(params[0], dict):  # already grouped by the caller
        return [{"weight_decay": weight_decay, **g} for g in params]
    params = [p for p in params if p.requires_grad]
    if not no_decay_norm_and_bias or weight_decay == 0:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": weight_decay},
    ]


def create_optimizer(
    name: str,
    params: nn.Module | Iterable[Any],
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    no_decay_norm_and_bias: bool = True,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """Create an optimizer by name (see ``list_optimizers()``).

    Args:
        name: case-insensitive optimizer name, e.g. ``"adamw"``, ``"sgd"``, ``"lamb"``.
        params: a module (preferred: parameter names let timm's rules skip decay on the right
            tensors), an iterable of parameters, or of parameter-group dicts.
        lr: learning rate. Default 1e-3.
        weight_decay: weight decay for weights. Default 0.0.
        no_decay_norm_and_bias: no weight decay on biases and normalisation parameters. Default True.
        **kwargs: passed to the optimizer (``momentum``, ``betas``, ``eps``...).

    Raises:
        ValueError: unknown name (lists the valid ones) or an argument the optimizer does not take.
    """
    key = name.lower().replace("_", "") if isinstance(name, str) else name
    torch_opts = _torch_optimizers()
    groups = _param_groups(params, weight_decay, no_decay_norm_and_bias)
    if key in torch_opts:
        cls = torch_opts[key]
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "params"}
        unknown = set(kwargs) - accepted
        if unknown:
            raise ValueError(
                f"optimizer '{key}' got unknown argument(s) {sorted(unknown)}; "
                f"it accepts: {', '.join(sorted(accepted))}"
            )
        if "weight_decay" not in accepted:
            for g in groups:
                g.pop("weight_decay", None)
        return cls(groups, lr=lr, **kwargs)
    if key in _timm_optimizers():
        # timm applies weight decay per group from the dicts we give it; filter_bias_and_bn is
        # off because the groups are already split.
        try:
            return create_optimizer_v2(
                groups,
                opt=key,
                lr=lr,
                weight_decay=weight_decay,
                filter_bias_and_bn=False,
                **kwargs,
            )
        except TypeError as err:
            raise ValueError(f"optimizer '{key}' (timm) rejected its arguments: {err}") from err
    all_names = set(torch_opts) | set(_timm_optimizers())
    raise unknown_name_error("optimizer", str(name), all_names, "autotimm.list_optimizers")
