"""FCOS head: shared conv towers over all pyramid levels; predicts only (no loss, no decoding)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor


def _tower(in_channels: int, channels: int, num_convs: int, norm_groups: int) -> nn.Sequential:
    groups = math.gcd(norm_groups, channels)
    if groups == channels and channels > 1:
        groups //= (
            2  # one channel per group has nothing to normalise on a 1x1 map (P7 of small inputs)
        )
    layers: list[nn.Module] = []
    for i in range(num_convs):
        layers += [
            nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1),
            nn.GroupNorm(groups, channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class FCOSHead(nn.Module):
    """Classification, box-regression and centerness predictions for every point.

    Args:
        in_channels: channels of every pyramid level (the FPN width).
        num_classes: number of object classes (no background class: sigmoid per class).
        num_convs: conv + GroupNorm + ReLU blocks in each tower. Default 4.
        num_levels: pyramid levels, each with its own learnable regression scale. Default 5.
        prior_probability: initial foreground probability of the classifier, which keeps the
            focal loss of the many background points small at the start. Default 0.01.
        norm_groups: GroupNorm groups (reduced to a divisor of the tower width with at least two
            channels per group). Default 32.
        channels: width of the towers (their first conv maps ``in_channels`` to it): fewer
            channels than the FPN's make a lighter head. Default None: ``in_channels``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        num_convs: int = 4,
        num_levels: int = 5,
        prior_probability: float = 0.01,
        norm_groups: int = 32,
        channels: int | None = None,
    ) -> None:
        super().__init__()
        width = in_channels if channels is None else int(channels)
        if width < 1 or (num_convs == 0 and width != in_channels):
            raise ValueError(
                f"head channels must be a positive int (and equal the FPN's {in_channels} when "
                f"head_num_convs=0), got {channels!r}"
            )
        self.num_classes = num_classes
        self.cls_tower = _tower(in_channels, width, num_convs, norm_groups)
        self.reg_tower = _tower(in_channels, width, num_convs, norm_groups)
        self.cls_logits = nn.Conv2d(width, num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(width, 4, 3, padding=1)
        self.bbox_ctrness = nn.Conv2d(width, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(num_levels))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        nn.init.constant_(
            self.cls_logits.bias, -math.log((1 - prior_probability) / prior_probability)
        )

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        """Predict on each level and concatenate.

        Returns:
            ``cls_logits`` (B, P, num_classes), ``bbox_regression`` (B, P, 4) non-negative ltrb
            distances in strides, ``bbox_ctrness`` (B, P) logits; P = sum of H*W over levels.
        """
        if len(features) > self.scales.numel():
            raise ValueError(f"head built for {self.scales.numel()} levels, got {len(features)}")
        cls_out, reg_out, ctr_out = [], [], []
        for level, x in enumerate(features):
            b = x.shape[0]
            c = self.cls_tower(x)
            r = self.reg_tower(x)
            cls_out.append(self.cls_logits(c).flatten(2).transpose(1, 2))
            # Scale and relu in float32: under bf16/fp16 autocast the distances (up to image
            # size / stride) would lose precision and can overflow fp16 after scaling.
            reg = torch.relu(self.bbox_pred(r).float() * self.scales[level].float())
            reg_out.append(reg.flatten(2).transpose(1, 2))
            ctr_out.append(self.bbox_ctrness(r).reshape(b, -1))
        return {
            "cls_logits": torch.cat(cls_out, 1),
            "bbox_regression": torch.cat(reg_out, 1),
            "bbox_ctrness": torch.cat(ctr_out, 1),
        }
