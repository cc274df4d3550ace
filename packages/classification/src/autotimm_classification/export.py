"""The classifier's export graph: uint8 images in, probabilities out."""

from __future__ import annotations

from torch import Tensor, nn

from autotimm_core.export import UInt8Normalize


class ClassifierExport(nn.Module):
    """Normalization, the timm network and softmax (sigmoid for multi-label) in one module.

    Args:
        backbone: the classifier's timm model.
        mean: per-channel mean (0-1 scale) of its data config.
        std: per-channel standard deviation (0-1 scale).
        multi_label: sigmoid per label instead of softmax. Default False.
    """

    def __init__(
        self, backbone: nn.Module, mean: tuple, std: tuple, multi_label: bool = False
    ) -> None:
        super().__init__()
        self.normalize = UInt8Normalize(mean, std)
        self.backbone = backbone
        self.multi_label = multi_label

    def forward(self, images: Tensor) -> tuple[Tensor]:
        logits = self.backbone(self.normalize(images))
        return (logits.sigmoid() if self.multi_label else logits.softmax(dim=-1),)
