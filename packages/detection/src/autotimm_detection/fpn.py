"""Neck: backbone levels C3-C5 to an FPN P3-P7 (the simple pyramid for plain ViTs is the core's,
``autotimm_core.features.SimpleFeaturePyramid``, re-exported here)."""

from __future__ import annotations

from collections import OrderedDict

import torch.nn as nn
from torch import Tensor
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from autotimm_core.features import SimpleFeaturePyramid

__all__ = ["FPN", "FPN_STRIDES", "SimpleFeaturePyramid"]

#: Strides of the FPN outputs P3-P7.
FPN_STRIDES: tuple[int, ...] = (8, 16, 32, 64, 128)


class FPN(nn.Module):
    """torchvision's FeaturePyramidNetwork on C3-C5 plus P6/P7 computed from P5.

    Args:
        in_channels: channels of C3, C4, C5.
        out_channels: channels of every output level. Default 256.
    """

    def __init__(self, in_channels: list[int], out_channels: int = 256) -> None:
        super().__init__()
        if len(in_channels) != 3:
            raise ValueError(f"FPN expects 3 input levels (C3-C5), got {len(in_channels)}")
        self.out_channels = out_channels
        self.fpn = FeaturePyramidNetwork(
            list(in_channels), out_channels, extra_blocks=LastLevelP6P7(out_channels, out_channels)
        )

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """P3-P7 (strides 8 to 128) from C3-C5 (strides 8, 16, 32)."""
        out = self.fpn(OrderedDict((str(i), f) for i, f in enumerate(features)))
        return list(out.values())
