"""Mixup / CutMix for a training batch: timm's ``Mixup``, made safe for odd batch sizes."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from timm.data.mixup import Mixup, mixup_target

# Set by the classifier's own arguments; mixup_kwargs may not repeat them.
_OWN = ("mixup_alpha", "cutmix_alpha", "label_smoothing", "num_classes", "multi_label")


def mixup_options() -> list[str]:
    """The ``timm.data.Mixup`` arguments that ``mixup_kwargs`` may set."""
    params = inspect.signature(Mixup.__init__).parameters
    return [p for p in params if p not in ("self", *_OWN)]


def create_mixup(
    mixup_alpha: float,
    cutmix_alpha: float,
    num_classes: int,
    label_smoothing: float,
    multi_label: bool,
    mixup_kwargs: Mapping[str, Any] | None = None,
) -> Mixup | None:
    """timm's ``Mixup`` for these settings, or None when both alphas are 0.

    Raises:
        ValueError: a negative alpha, or a ``mixup_kwargs`` key that is not a ``Mixup``
            argument (or is one the classifier sets itself), with the valid ones.
        ImportError: multi-label mixing on a timm whose ``Mixup`` lacks ``multi_label``.
    """
    for name, alpha in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha < 0:
            raise ValueError(f"{name} must be a number >= 0 (0 disables it), got {alpha!r}")
    extra = dict(mixup_kwargs or {})
    valid = mixup_options()
    bad = sorted(k for k in extra if k not in valid)
    if bad:
        raise ValueError(
            f"mixup_kwargs has unknown key(s) {bad}; timm's Mixup takes {valid} here "
            f"({', '.join(_OWN)} come from the classifier's own arguments)"
        )
    if not mixup_alpha and not cutmix_alpha and extra.get("cutmix_minmax") is None:
        return None
    kwargs: dict[str, Any] = {}
    if multi_label:
        if "multi_label" not in inspect.signature(Mixup.__init__).parameters:
            raise ImportError(
                "mixup/cutmix with multi_label=True needs timm's Mixup(multi_label=...), which "
                "this timm lacks: pip install -U timm"
            )
        kwargs["multi_label"] = True
    return Mixup(
        mixup_alpha=float(mixup_alpha),
        cutmix_alpha=float(cutmix_alpha),
        label_smoothing=float(label_smoothing),
        num_classes=num_classes,
        **kwargs,
        **extra,
    )


def mix_batch(
    mixup: Mixup, images: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixed float images and soft targets ``(N, C)``.

    timm's ``Mixup`` pairs each sample with its mirror in the batch and refuses odd sizes (a
    last batch, a batch that lost an unreadable file): the last sample of an odd batch is then
    left unmixed, with the same label smoothing as the rest.
    """
    if images.shape[0] % 2 == 0:
        return mixup(images, target)
    head_x, head_y = mixup(images[:-1], target[:-1])
    multi = bool(getattr(mixup, "multi_label", False))
    tail_kwargs = {"multi_label": True} if multi else {}
    tail_y = mixup_target(target[-1:], mixup.num_classes, 1.0, mixup.label_smoothing, **tail_kwargs)
    return torch.cat([head_x, images[-1:]]), torch.cat([head_y, tail_y.to(head_y.dtype)])
