"""Decoder heads: feature maps at strides 4, 8, 16 and 32 to class logits at stride 4.

Each head is a small module on the maps of :class:`autotimm_core.FeatureAdapter`; the model
upsamples their stride-4 logits to the input size. Built from torchvision's modules where one
exists (FeaturePyramidNetwork, DeepLab's ASPP).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.segmentation.deeplabv3 import ASPP
from torchvision.ops import Conv2dNormActivation, FeaturePyramidNetwork

#: Strides of the feature maps every head takes.
HEAD_STRIDES: tuple[int, ...] = (4, 8, 16, 32)
#: The heads by name.
HEADS = ("fpn", "unet", "deeplabv3plus")


def _up(x: Tensor, like: Tensor) -> Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class FPNHead(nn.Module):
    """Semantic FPN (Kirillov et al., Panoptic FPN): torchvision's FeaturePyramidNetwork, each
    level refined by a conv and upsampled to stride 4, summed, then a 1x1 classifier.

    Args:
        in_channels: channels of the maps at strides 4, 8, 16, 32.
        num_classes: output channels.
        channels: FPN and decoder width. Default 128.
        dropout: dropout before the classifier. Default 0.1.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.fpn = FeaturePyramidNetwork(list(in_channels), channels)
        self.refine = nn.ModuleList(
            Conv2dNormActivation(channels, channels, 3, norm_layer=nn.BatchNorm2d)
            for _ in in_channels
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[Tensor]) -> Tensor:
        levels = self.fpn(OrderedDict((str(i), f) for i, f in enumerate(features))).values()
        maps = [conv(p) for conv, p in zip(self.refine, levels)]
        x = maps[0]
        for m in maps[1:]:
            x = x + _up(m, x)
        return self.classifier(self.dropout(x))


class UNetHead(nn.Module):
    """U-Net decoder: from the deepest map, upsample x2, concatenate the skip map, two 3x3 convs.

    Args:
        in_channels: channels of the maps at strides 4, 8, 16, 32.
        num_classes: output channels.
        channels: decoder width at stride 16, halved at each finer level (at least 32).
            Default 128.
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, channels: int = 128) -> None:
        super().__init__()
        skips = list(in_channels)[:-1][::-1]  # strides 16, 8, 4
        widths = [max(channels // 2**i, 32) for i in range(len(skips))]
        blocks, prev = [], in_channels[-1]
        for skip, width in zip(skips, widths):
            blocks.append(
                nn.Sequential(
                    Conv2dNormActivation(prev + skip, width, 3, norm_layer=nn.BatchNorm2d),
                    Conv2dNormActivation(width, width, 3, norm_layer=nn.BatchNorm2d),
                )
            )
            prev = width
        self.blocks = nn.ModuleList(blocks)
        self.classifier = nn.Conv2d(prev, num_classes, 1)

    def forward(self, features: list[Tensor]) -> Tensor:
        x = features[-1]
        for block, skip in zip(self.blocks, features[-2::-1]):
            x = block(torch.cat([_up(x, skip), skip], dim=1))
        return self.classifier(x)


class DeepLabV3PlusHead(nn.Module):
    """DeepLabV3+ (Chen et al. 2018): torchvision's ASPP on the stride-32 map, upsampled to
    stride 4 and joined with the projected stride-4 map, two 3x3 convs, a 1x1 classifier.

    Args:
        in_channels: channels of the maps at strides 4, 8, 16, 32.
        num_classes: output channels.
        channels: ASPP and decoder width. Default 128.
        atrous_rates: ASPP dilation rates at stride 32 (the paper's 12/24/36 at stride 8 and
            6/12/18 at stride 16, scaled). Default (3, 6, 9).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 128,
        atrous_rates: Sequence[int] = (3, 6, 9),
    ) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels[-1], list(atrous_rates), out_channels=channels)
        low = 48
        self.project = Conv2dNormActivation(in_channels[0], low, 1, norm_layer=nn.BatchNorm2d)
        self.fuse = nn.Sequential(
            Conv2dNormActivation(channels + low, channels, 3, norm_layer=nn.BatchNorm2d),
            Conv2dNormActivation(channels, channels, 3, norm_layer=nn.BatchNorm2d),
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[Tensor]) -> Tensor:
        low = self.project(features[0])
        x = _up(self.aspp(features[-1]), low)
        return self.classifier(self.fuse(torch.cat([x, low], dim=1)))


def build_head(
    name: str, in_channels: Sequence[int], num_classes: int, channels: int = 128
) -> nn.Module:
    """The head called ``name`` (one of :data:`HEADS`) for maps with ``in_channels``."""
    if name == "fpn":
        return FPNHead(in_channels, num_classes, channels)
    if name == "unet":
        return UNetHead(in_channels, num_classes, channels)
    if name == "deeplabv3plus":
        return DeepLabV3PlusHead(in_channels, num_classes, channels)
    raise ValueError(f"head must be one of {list(HEADS)}, got {name!r}")
