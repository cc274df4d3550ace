"""Point grid of an anchor-free detector and the ltrb box coder.

Every feature-map cell of every pyramid level is one point; a point predicts the distances
(left, top, right, bottom) from its location to the sides of a box, in units of its level's stride.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Object size (longest ltrb distance, in pixels) each level of P3-P7 is responsible for.
DEFAULT_SIZE_RANGES: tuple[tuple[float, float], ...] = (
    (0.0, 64.0),
    (64.0, 128.0),
    (128.0, 256.0),
    (256.0, 512.0),
    (512.0, float("inf")),
)


#: Input side the FCOS size ranges were set for (the paper's 800 px shorter side).
RANGES_IMAGE_SIZE = 800.0


def scaled_size_ranges(
    image_size: float,
    levels: tuple[int, ...] = (3, 4, 5, 6, 7),
    size_ranges: tuple[tuple[float, float], ...] = DEFAULT_SIZE_RANGES,
) -> tuple[tuple[float, float], ...]:
    """FCOS's per-level object sizes scaled from 800 px to ``image_size``, for the used levels.

    At 256 px the 800-px ranges would leave P6/P7 without any positive (no object is 256 px
    from a point); scaled, each level keeps the share of object sizes it has at 800 px.

    Args:
        image_size: the input's longest side in pixels.
        levels: the pyramid levels used (3 = P3 ... 7 = P7), increasing. Default P3-P7.
        size_ranges: the ranges of P3-P7 at 800 px. Default :data:`DEFAULT_SIZE_RANGES`.

    Returns:
        One ``(min, max)`` per used level: a level's upper bound is its own one, its lower bound
        the previous used level's upper bound (the first level starts at 0, the last is open).
    """
    scale = image_size / RANGES_IMAGE_SIZE
    out, low = [], 0.0
    for i, level in enumerate(levels):
        high = size_ranges[level - 3][1] * scale if i < len(levels) - 1 else float("inf")
        out.append((low, high))
        low = high
    return tuple(out)


def make_points(
    feature_sizes: list[tuple[int, int]],
    strides: list[int],
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    offset: float = 0.5,
) -> tuple[Tensor, Tensor, list[int]]:
    """Locations of all feature-map cells, level after level.

    Args:
        feature_sizes: ``(height, width)`` of each level's feature map.
        strides: input pixels per cell of each level (e.g. ``[8, 16, 32, 64, 128]``).
        device: device of the returned tensors. Default: CPU.
        dtype: floating dtype of the returned tensors. Default float32.
        offset: where in its cell a point lies, in strides: 0.5 is the cell's centre (the
            official FCOS and mmdetection: cell (0, 0) covers pixels [0, stride)), 0.0 its
            top-left corner (torchvision's FCOS; where a ResNet's padded stride-2 convolutions
            centre each output cell's receptive field). Default 0.5.

    Returns:
        ``points`` (P, 2) as (x, y) in input pixels, ``point_strides`` (P,) and the number of
        points per level.
    """
    if len(feature_sizes) != len(strides):
        raise ValueError(f"{len(feature_sizes)} feature maps but {len(strides)} strides")
    points, point_strides, counts = [], [], []
    for (h, w), stride in zip(feature_sizes, strides):
        ys = (torch.arange(h, device=device, dtype=dtype) + offset) * stride
        xs = (torch.arange(w, device=device, dtype=dtype) + offset) * stride
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1))
        point_strides.append(torch.full((h * w,), float(stride), device=device, dtype=dtype))
        counts.append(h * w)
    return torch.cat(points), torch.cat(point_strides), counts


def level_size_ranges(
    counts: list[int],
    size_ranges: tuple[tuple[float, float], ...] = DEFAULT_SIZE_RANGES,
    device: torch.device | None = None,
) -> Tensor:
    """Per-point ``(min, max)`` object size, expanded from one range per level.

    Args:
        counts: number of points per level (from :func:`make_points`).
        size_ranges: one ``(min, max)`` per level. Default :data:`DEFAULT_SIZE_RANGES`.
        device: device of the result. Default: CPU.

    Returns:
        (P, 2) float tensor. The first level starts at 0 and the last ends at infinity whatever
        ``size_ranges`` says, so that no object is too small or too large for every level.
    """
    if len(counts) > len(size_ranges):
        raise ValueError(f"{len(counts)} levels but only {len(size_ranges)} size ranges")
    ranges = torch.tensor(size_ranges[: len(counts)], dtype=torch.float32, device=device)
    ranges[0, 0] = 0.0
    ranges[-1, 1] = float("inf")
    return ranges.repeat_interleave(torch.tensor(counts, device=device), dim=0)


def encode_ltrb(points: Tensor, boxes: Tensor, strides: Tensor) -> Tensor:
    """Distances from ``points`` to the sides of ``boxes`` (xyxy), divided by ``strides``.

    Shapes broadcast: ``points`` (..., 2), ``boxes`` (..., 4), ``strides`` (...).
    """
    x, y = points[..., 0], points[..., 1]
    ltrb = torch.stack(
        [x - boxes[..., 0], y - boxes[..., 1], boxes[..., 2] - x, boxes[..., 3] - y], dim=-1
    )
    return ltrb / strides.unsqueeze(-1)


def decode_ltrb(points: Tensor, distances: Tensor, strides: Tensor) -> Tensor:
    """Inverse of :func:`encode_ltrb`: xyxy boxes from stride-normalised ltrb distances."""
    d = distances * strides.unsqueeze(-1)
    x, y = points[..., 0], points[..., 1]
    return torch.stack([x - d[..., 0], y - d[..., 1], x + d[..., 2], y + d[..., 3]], dim=-1)
