"""Optimizers: torch.optim and timm.optim under one lower-case name space."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from timm.optim import create_optimizer_v2, get_optimizer_info, param_groups_weight_decay
from timm.optim import list_optimizers as _timm_list_optimizers

from autotimm_core._imports import is_available
from autotimm_core.registry import Registry


@dataclass(frozen=True)
class OptimizerInfo:
    """A registry entry: where an optimizer comes from and how it is built.

    Attributes:
        name: the lower-case name (``"adamw"``).
        source: ``"torch"`` (built from ``cls``) or ``"timm"`` (built by timm's factory, which
            applies timm's per-optimizer defaults, e.g. ``nesterov`` for ``sgdp``).
        cls: the ``torch.optim`` class; None for timm optimizers.
    """

    name: str
    source: str
    cls: type[torch.optim.Optimizer] | None = None


# Optimizers that cannot train a task's model with its decay / no-decay parameter groups in the
# plain ``loss.backward(); optimizer.step()`` loop of Lightning's automatic optimization. They are
# left out of list_optimizers() and refused by name with the reason (tests/core/test_optimizers.py
# builds and steps every listed name).
_KRON_REASON = (
    "timm's Kron (PSGD) compiles a preconditioner update per parameter shape with torch.compile "
    "(minutes on CPU even for a small ResNet) and timm calls it unusable without the optional "
    "opt_einsum package, which AutoTimm does not install: without it the einsum contractions can "
    "ask for ~100 GB for a tiny model"
)
UNSUPPORTED_OPTIMIZERS: dict[str, str] = {
    "lbfgs": (
        "torch.optim.LBFGS takes a single parameter group (no decay/no-decay split) and "
        "re-evaluates the loss through a closure several times per step"
    ),
    "sparseadam": (
        "torch.optim.SparseAdam only takes sparse gradients (nn.Embedding(sparse=True)); "
        "convolutions, linear and norm layers give dense ones"
    ),
    "adahessian": (
        "timm's Adahessian needs the gradient graph (loss.backward(create_graph=True)) for its "
        "Hessian estimate, which the training step does not build"
    ),
    "kron": _KRON_REASON,
    "kronc": _KRON_REASON,
    "kronw": _KRON_REASON,
}

# Names in both torch.optim and timm where timm's implementation is the one that works: torch's
# Muon only takes 2-D parameters, timm's updates conv weights too and trains 1-D ones (biases,
# norms) with its AdamW fallback. Every other shared name (adamw, sgd...) builds torch's class.
_TIMM_PREFERRED = {"muon"}

# timm registers optimizers from optional packages by import path; they are listed only when
# that package is installed and the CUDA device they need is there.
_OPTIONAL_PACKAGES = {"apex.": "apex", "bitsandbytes.": "bitsandbytes"}


def _optimizer_key(name: str) -> str:
    return name.strip().lower().replace("_", "")


def _optional_usable(import_path: str) -> bool:
    for prefix, package in _OPTIONAL_PACKAGES.items():
        if import_path.startswith(prefix):
            return is_available(package) and torch.cuda.is_available()
    return True


def _load_optimizers(registry: Registry[OptimizerInfo]) -> None:
    # torch.optim's public classes, from its __all__ (it also lists modules and helpers).
    for attr in torch.optim.__all__:
        cls = getattr(torch.optim, attr, None)
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
            continue
        key = _optimizer_key(attr)
        if cls is torch.optim.Optimizer or key in UNSUPPORTED_OPTIMIZERS or key in _TIMM_PREFERRED:
            continue
        registry.register(key, OptimizerInfo(key, "torch", cls))
    for name in _timm_list_optimizers():
        key = _optimizer_key(name)
        if key in UNSUPPORTED_OPTIMIZERS or key in registry:
            continue
        opt_class = get_optimizer_info(name).opt_class
        if isinstance(opt_class, str) and not _optional_usable(opt_class):
            continue
        registry.register(key, OptimizerInfo(key, "timm"))


#: Every optimizer that can be named: lower-case, ``_`` ignored (``"adam_w"`` is ``"adamw"``).
OPTIMIZERS: Registry[OptimizerInfo] = Registry(
    "optimizer", "autotimm.list_optimizers", normalize=_optimizer_key, loader=_load_optimizers
)


def list_optimizers() -> dict[str, list[str]]:
    """Optimizer names by source: ``{"torch": [...], "timm": [...]}``, lower-case, sorted.

    A name in both torch and timm (``adamw``, ``sgd``...) is listed under ``torch`` and creates
    the torch implementation; ``muon`` is timm's (it also trains 1-D parameters). Optimizers
    that cannot train a model's parameter groups with a plain backward and step (``lbfgs``,
    ``sparseadam``, ``adahessian``, ``kron``, ``kronc``, ``kronw``: see
    ``UNSUPPORTED_OPTIMIZERS`` for why) are not listed.
    """
    out: dict[str, list[str]] = {"torch": [], "timm": []}
    for name, info in OPTIMIZERS.items():
        out[info.source].append(name)
    return out


def resolve_optimizer_name(name: str) -> str:
    """The registered name for ``name`` (case and ``_`` ignored), without building anything.

    Raises:
        ValueError: an unsupported optimizer (the message says why), or an unknown name (the
            message lists close matches and points to ``autotimm.list_optimizers()``).
    """
    if isinstance(name, str) and _optimizer_key(name) in UNSUPPORTED_OPTIMIZERS:
        reason = UNSUPPORTED_OPTIMIZERS[_optimizer_key(name)]
        raise ValueError(
            f"optimizer '{name}' cannot train a task's parameter groups: {reason}. "
            "Choose another from autotimm.list_optimizers()."
        )
    return OPTIMIZERS.resolve(name)


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
        ValueError: unknown name (lists close matches), an optimizer that is not supported
            (says why, see ``resolve_optimizer_name``), or an argument the optimizer does not take.
    """
    info = OPTIMIZERS.get(resolve_optimizer_name(name))
    key = info.name
    groups = _param_groups(params, weight_decay, no_decay_norm_and_bias)
    if info.cls is not None:
        cls = info.cls
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
