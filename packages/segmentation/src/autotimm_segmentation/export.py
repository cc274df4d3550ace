"""The segmentor's export graph: uint8 images in, class probabilities and the class map out."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from autotimm_core.export import UInt8Normalize


class SegmentorExport(nn.Module):
    """Normalization, backbone, feature adapter and head, upsampled to the input size.

    Args:
        backbone: the segmentor's timm feature extractor.
        adapter: its ``FeatureAdapter``.
        head: its decoder head.
        mean: per-channel mean (0-1 scale) of its data config.
        std: per-channel standard deviation (0-1 scale).
    """

    def __init__(
        self, backbone: nn.Module, adapter: nn.Module, head: nn.Module, mean: tuple, std: tuple
    ) -> None:
        super().__init__()
        self.normalize = UInt8Normalize(mean, std)
        self.backbone, self.adapter, self.head = backbone, adapter, head

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = self.normalize(images)
        logits = self.head(self.adapter(self.backbone(x)))
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        probabilities = logits.softmax(dim=1)
        return probabilities, probabilities.argmax(dim=1)
