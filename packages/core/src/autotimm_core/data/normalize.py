"""Normalization on the device: uint8 batches become normalized float32 where they are used.

Both tasks' data modules hand uint8 batches over (a quarter of the bytes of float32 between
worker processes and to the GPU) and normalize after the transfer, as timm's prefetcher does.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch


def normalize_images(
    images: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """uint8 images, ``(3, H, W)`` or ``(N, 3, H, W)`` on any device, to normalized float32.

    Equal (to float rounding) to ``ToDtype(float32, scale=True)`` then ``Normalize(mean, std)``,
    in one conversion and one fused subtract-divide. A float tensor is returned unchanged: it
    is taken to be normalized already.

    Args:
        images: the batch or image.
        mean: per-channel mean on the 0-1 scale.
        std: per-channel standard deviation on the 0-1 scale.
    """
    if images.dtype != torch.uint8:
        return images
    m, s = _scaled_stats(tuple(float(v) for v in mean), tuple(float(v) for v in std), images.device)
    return images.float().sub_(m).div_(s)


@functools.lru_cache(maxsize=16)
def _scaled_stats(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    # Made once per device: building them per batch would copy to the GPU (and wait) each step.
    m = torch.tensor([255.0 * v for v in mean], device=device).view(3, 1, 1)
    s = torch.tensor([255.0 * v for v in std], device=device).view(3, 1, 1)
    return m, s


def mean_fill(mean: Sequence[float]) -> list[int]:
    """The uint8 colour that normalizes to (nearly) 0: what erasing and padding fill with."""
    return [round(255 * v) for v in mean]
