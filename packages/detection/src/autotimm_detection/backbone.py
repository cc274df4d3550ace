"""timm feature extractors as detection backbones: level selection, channel-last maps, plain ViTs."""

from __future__ import annotations

import inspect

import torch.nn as nn
from torch import Tensor

from autotimm_core import create_backbone
from autotimm_detection.fpn import SimpleFeaturePyramid


def build_timm_backbone(name: str, pretrained: bool, image_size: int | None = None) -> nn.Module:
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


class PyramidAdapter(nn.Module):
    """Picks C3-C5 (strides 8/16/32) from a timm feature extractor's outputs, as NCHW maps.

    Channel-last outputs (Swin, some MaxViT variants) are permuted; a backbone with only stride-16
    maps (plain ViT) gets a :class:`~autotimm_detection.fpn.SimpleFeaturePyramid`.

    Args:
        channels: ``feature_info.channels()`` of the backbone.
        reductions: ``feature_info.reduction()`` of the backbone.
        name: backbone name, for error messages.
    """

    def __init__(self, channels: list[int], reductions: list[int], name: str = "backbone") -> None:
        super().__init__()
        self.feature_channels = list(channels)
        # Last output at each stride: transformers may give several maps per stride.
        last = {r: i for i, r in enumerate(reductions)}
        if all(s in last for s in (8, 16, 32)):
            self.indices = [last[8], last[16], last[32]]
            self.simple = None
            self.out_channels = [channels[i] for i in self.indices]
        elif 16 in last:
            self.indices = [last[16]]
            self.simple = SimpleFeaturePyramid(channels[last[16]])
            self.out_channels = [channels[last[16]]] * 3
        else:
            raise ValueError(
                f"backbone '{name}' gives feature maps at strides {reductions}; detection needs "
                "strides 8, 16 and 32 (CNNs, Swin, ConvNeXt, MaxViT...) or a stride-16 map (ViT)"
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
