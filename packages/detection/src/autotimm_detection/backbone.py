"""Detection backbones: the shared timm feature adapter of ``autotimm_core.features`` at C3-C5.

The generic parts (``features_only`` models, channel-last maps, the plain-ViT simple pyramid)
live in the core, shared with segmentation; these names stay for detection's users.
"""

from __future__ import annotations

from autotimm_core.features import FeatureAdapter, accepts_img_size, build_feature_backbone

#: The detection name of :func:`autotimm_core.features.build_feature_backbone`.
build_timm_backbone = build_feature_backbone

__all__ = ["PyramidAdapter", "accepts_img_size", "build_timm_backbone"]


class PyramidAdapter(FeatureAdapter):
    """Picks C3-C5 (strides 8/16/32) from a timm feature extractor's outputs, as NCHW maps.

    Channel-last outputs (Swin, some MaxViT variants) are permuted; a backbone with only stride-16
    maps (plain ViT) gets a :class:`~autotimm_core.features.SimpleFeaturePyramid`.

    Args:
        channels: ``feature_info.channels()`` of the backbone.
        reductions: ``feature_info.reduction()`` of the backbone.
        name: backbone name, for error messages.
    """

    def __init__(self, channels: list[int], reductions: list[int], name: str = "backbone") -> None:
        super().__init__(channels, reductions, name=name, strides=(8, 16, 32), task="detection")
