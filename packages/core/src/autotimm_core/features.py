"""timm feature extractors for dense tasks: level selection, channel-last maps, plain ViTs.

Detection and segmentation both need a pyramid of NCHW maps at fixed strides from any timm
backbone: CNNs give them directly, hierarchical transformers (Swin, some MaxViT variants) give
channel-last maps, and a plain ViT gives one stride-16 map that a simple pyramid (ViTDet-style)
turns into the others. This module holds that adapter once for every task.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch.nn as nn
from torch import Tensor

from autotimm_core.backbones import create_backbone


def build_feature_backbone(name: str, pretrained: bool, image_size: int | None = None) -> nn.Module:
    """A timm ``features_only`` model; ``img_size`` is passed to models that take one (ViT, Swin...).

    Args:
        name: timm model name.
        pretrained: load pretrained weights (timm adapts position embeddings to ``image_size``).
        image_size: square input size for models built for a fixed size. Default: the model's own.
    """
    if image_size is not None and accepts_img_size(name):
        return create_backbone(name, pretrained=pretrained, features_only=True, img_size=image_size)
    return create_backbone(name, pretrained=pretrained, features_only=True)


def accepts_img_size(name: str) -> bool:
    """True when the timm model class of ``name`` is built for a given input size (``img_size``)."""
    import timm

    arch = name.split(".")[0]
    if not timm.is_model(arch):
        return False
    model_cls = _model_class(arch)
    return model_cls is not None and "img_size" in inspect.signature(model_cls.__init__).parameters


def _model_class(arch: str) -> type | None:
    import timm.models

    module = inspect.getmodule(timm.models.model_entrypoint(arch))
    # The entrypoint's module defines the model class that its builder instantiates.
    for obj in vars(module).values():
        if (
            isinstance(obj, type)
            and issubclass(obj, nn.Module)
            and obj.__module__ == module.__name__
            and "img_size" in inspect.signature(obj.__init__).parameters
        ):
            return obj
    return None


class SimpleFeaturePyramid(nn.Module):
    """Maps at ``strides`` from one stride-16 map (ViTDet-style): upsample, identity, downsample.

    Args:
        channels: channels of the single backbone map.
        strides: output strides, any of 4, 8, 16, 32, in increasing order. Default (8, 16, 32).
    """

    def __init__(self, channels: int, strides: Sequence[int] = (8, 16, 32)) -> None:
        super().__init__()
        bad = [s for s in strides if s not in (4, 8, 16, 32)]
        if bad or list(strides) != sorted(set(strides)):
            raise ValueError(
                f"SimpleFeaturePyramid strides must be increasing values among 4, 8, 16, 32, "
                f"got {list(strides)}"
            )
        self.strides = tuple(strides)
        # Attribute names kept from the detection package's pyramid (its checkpoints load).
        if 8 in self.strides:
            self.up = nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2)
        if 4 in self.strides:
            self.up4 = nn.Sequential(
                nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2),
                nn.GELU(),
                nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2),
            )
        if 32 in self.strides:
            self.down = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> list[Tensor]:
        make = {4: "up4", 8: "up", 32: "down"}
        return [x if s == 16 else getattr(self, make[s])(x) for s in self.strides]


class FeatureAdapter(nn.Module):
    """Picks the maps at ``strides`` from a timm feature extractor's outputs, as NCHW maps.

    Channel-last outputs (Swin, some MaxViT variants) are permuted; a backbone with only stride-16
    maps (plain ViT) gets a :class:`SimpleFeaturePyramid`.

    Args:
        channels: ``feature_info.channels()`` of the backbone.
        reductions: ``feature_info.reduction()`` of the backbone.
        name: backbone name, for error messages. Default ``"backbone"``.
        strides: the output strides, increasing. Default (8, 16, 32) (detection's C3-C5).
        task: the task named in error messages. Default ``"detection"``.

    Attributes:
        out_channels: channels of each output map.
        strides: the output strides.

    Raises:
        ValueError: a backbone without maps at ``strides`` nor a stride-16 map.
    """

    def __init__(
        self,
        channels: list[int],
        reductions: list[int],
        name: str = "backbone",
        strides: Sequence[int] = (8, 16, 32),
        task: str = "detection",
    ) -> None:
        super().__init__()
        self.feature_channels = list(channels)
        self.strides = tuple(strides)
        # Last output at each stride: transformers may give several maps per stride.
        last = {r: i for i, r in enumerate(reductions)}
        if all(s in last for s in self.strides):
            self.indices = [last[s] for s in self.strides]
            self.simple = None
            self.out_channels = [channels[i] for i in self.indices]
        elif 16 in last:
            self.indices = [last[16]]
            self.simple = SimpleFeaturePyramid(channels[last[16]], self.strides)
            self.out_channels = [channels[last[16]]] * len(self.strides)
        else:
            wanted = ", ".join(map(str, self.strides))
            raise ValueError(
                f"backbone '{name}' gives feature maps at strides {reductions}; {task} needs "
                f"strides {wanted} (CNNs, Swin, ConvNeXt, MaxViT...) or a stride-16 map (ViT)"
            )

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        maps = []
        for i in self.indices:
            x = features[i]
            c = self.feature_channels[i]
            if x.ndim == 4 and x.shape[1] != c and x.shape[-1] == c:
                x = x.permute(0, 3, 1, 2)  # NHWC -> NCHW
            maps.append(x.contiguous())
        if self.simple is not None:
            return self.simple(maps[0])
        return maps
