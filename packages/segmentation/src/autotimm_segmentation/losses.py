"""Segmentation losses by name: torch's cross-entropy and segmentation_models_pytorch's losses.

Every loss takes logits ``(B, C, H, W)`` and a class map ``(B, H, W)`` and leaves pixels equal to
``ignore_index`` out. Dice, focal and Lovasz-softmax come from ``segmentation_models_pytorch.losses``
(only that sub-package is imported: it loads none of its models).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from autotimm_core.validation import check_choice

#: The losses by name.
LOSSES = ("ce", "dice", "ce+dice", "focal", "lovasz")


class CrossEntropy(nn.Module):
    """Pixel-wise cross-entropy with ``ignore_index`` and optional class weights."""

    def __init__(self, ignore_index: int, weight: Tensor | None = None) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits, target, weight=self.weight, ignore_index=self.ignore_index)


class SumOfLosses(nn.Module):
    """The sum of several losses on the same logits and target."""

    def __init__(self, *losses: nn.Module) -> None:
        super().__init__()
        self.losses = nn.ModuleList(losses)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return sum(loss(logits, target) for loss in self.losses)


def build_loss(
    name: str,
    ignore_index: int = 255,
    class_weights: Sequence[float] | None = None,
) -> nn.Module:
    """The loss called ``name``.

    Args:
        name: ``"ce"`` (cross-entropy), ``"dice"`` (soft Dice), ``"ce+dice"`` (their sum),
            ``"focal"`` (focal loss, gamma 2) or ``"lovasz"`` (Lovasz-softmax, a surrogate of
            the IoU).
        ignore_index: target value left out of the loss. Default 255.
        class_weights: per-class weights (one per class) of the cross-entropy, Dice and focal
            terms; Lovasz-softmax takes none. Default None.

    Raises:
        ValueError: an unknown name (the choices are listed), or ``class_weights`` with
            ``"lovasz"``.
    """
    check_choice("loss", name, LOSSES)
    if class_weights is not None and name == "lovasz":
        raise ValueError(
            "class_weights apply to loss='ce', 'dice', 'ce+dice' or 'focal'; "
            "loss='lovasz' (segmentation_models_pytorch's LovaszLoss) takes none"
        )
    weight = None if class_weights is None else torch.tensor(list(class_weights), dtype=torch.float)
    if name == "ce":
        return CrossEntropy(ignore_index, weight)
    from segmentation_models_pytorch import losses as smp_losses

    weights = None if class_weights is None else [float(w) for w in class_weights]
    if name == "dice":
        return smp_losses.DiceLoss("multiclass", ignore_index=ignore_index, class_weights=weights)
    if name == "ce+dice":
        return SumOfLosses(
            CrossEntropy(ignore_index, weight),
            smp_losses.DiceLoss("multiclass", ignore_index=ignore_index, class_weights=weights),
        )
    if name == "focal":
        return smp_losses.FocalLoss("multiclass", ignore_index=ignore_index, class_weights=weights)
    return smp_losses.LovaszLoss("multiclass", ignore_index=ignore_index)
