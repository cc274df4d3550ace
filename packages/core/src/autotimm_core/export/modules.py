"""Building blocks of export graphs: uint8 in, normalized float out, inside the graph."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class UInt8Normalize(nn.Module):
    """uint8 ``(B, 3, H, W)`` images to normalized float32, as ``normalize_images`` computes it.

    The mean and std (0-1 scale) are buffers, so they become constants of the exported graph
    (``normalize_images`` keeps per-device tensors in a cache, which tracing must not fill).

    Args:
        mean: per-channel mean on the 0-1 scale.
        std: per-channel standard deviation on the 0-1 scale.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([255.0 * v for v in mean]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([255.0 * v for v in std]).view(1, 3, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        return (images.float() - self.mean) / self.std
