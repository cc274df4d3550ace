"""Image resizing that gives the same uint8 pixels as the model's evaluation transform.

The PyTorch side resizes uint8 tensors with torchvision (``transforms.v2.functional.resize``,
``antialias=True``), which runs torch's native uint8 kernel: PIL-style antialiased weights
computed in float64, rescaled to int16 fixed point with a precision chosen from the largest
weight, a horizontal then a vertical pass, each rounded to uint8. Pillow's own ``resize`` uses
22-bit weights instead, so its pixels differ by 1-2 levels in about 0.1-0.7% of places (measured
on the scikit-learn sample photos), enough to move a probability by more than 1e-4. The runtime
has no torch, so the kernel is written here in numpy, integer-exact. ``nearest`` follows torch's
``floor(i * in / out)`` rule (in float32), which is not Pillow's either.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

#: Resize interpolations the runtime implements (those of AutoTimm's DataConfig).
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


def _linear(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


def _cubic(x: np.ndarray) -> np.ndarray:
    # Keys' cubic convolution with a = -0.5 (what antialiased resizing uses, as Pillow does).
    a = -0.5
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _int16_weights(in_size: int, out_size: int, interpolation: str) -> tuple[np.ndarray, ...]:
    """``(xmin (out,), weights int32 (out, K), precision)`` of one axis."""
    filt, taps = (_linear, 2) if interpolation == "bilinear" else (_cubic, 4)
    scale = in_size / out_size
    support = taps * 0.5 * scale if scale >= 1.0 else taps * 0.5
    k = math.ceil(support) * 2 + 1
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    center = scale * (np.arange(out_size, dtype=np.float64) + 0.5)
    # C's truncation toward zero, then clamped to the image.
    xmin = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size)
    xsize = xmax - xmin
    j = np.arange(k)
    w = filt((j[None, :] + xmin[:, None] - center[:, None] + 0.5) * invscale)
    w = np.where(j[None, :] < xsize[:, None], w, 0.0)
    total = w.sum(axis=1, keepdims=True)
    w = np.where(total != 0.0, w / np.where(total == 0.0, 1.0, total), w)
    w_max = float(w.max())
    precision = 0
    while precision < 22 and int(0.5 + w_max * (1 << (precision + 1))) < (1 << 15):
        precision += 1
    scaled = w * (1 << precision)
    wi = np.where(scaled < 0, np.trunc(scaled - 0.5), np.trunc(scaled + 0.5)).astype(np.int64)
    return xmin, wi, precision


def _swap_axes(image: np.ndarray) -> np.ndarray:
    """The ``(W, H, C)`` contiguous transpose of an ``(H, W, C)`` uint8 image."""
    if image.ndim == 3 and image.shape[2] == 3:
        # Pillow's transpose is 3-4x faster than numpy's strided copy of 3-byte pixels, which
        # was most of a resize's time.
        return np.asarray(Image.fromarray(image).transpose(Image.Transpose.TRANSPOSE))
    return np.ascontiguousarray(image.transpose(1, 0, *range(2, image.ndim)))


def _pass(
    image: np.ndarray,
    weights: tuple[np.ndarray, np.ndarray, int],
    keep: tuple[int, int],
    offset: int = 0,
) -> np.ndarray:
    """One separable pass along the first axis of a contiguous ``(in, other, C)`` uint8 image
    (the vertical pass of an HWC image; the horizontal one runs on its transpose).

    Args:
        image: the input, or the part of it from index ``offset`` on along the first axis.
        weights: ``_int16_weights`` of the axis (for the whole input).
        keep: the outputs ``(start, stop)`` to compute, each with exactly the integers of the
            full pass.
        offset: where ``image`` starts in the whole input along the first axis.
    """
    xmin, w, precision = weights
    start, stop = keep
    k = w.shape[1]
    # Taps past the input's end have zero weight: any index in range will do for them.
    idx = np.clip(xmin[start:stop, None] + np.arange(k)[None, :] - offset, 0, image.shape[0] - 1)
    # One multiply-add per tap over the whole image, integer-exact, accumulated in int32 as
    # torch's uint8 kernel does (int16 weights: |sum| < 2**31); an einsum over all taps at once
    # runs numpy's slow generic integer loop instead.
    w32 = w[start:stop].astype(np.int32)
    acc = np.full((stop - start, *image.shape[1:]), 1 << (precision - 1), dtype=np.int32)
    tap = np.empty_like(acc)
    for j in range(k):
        np.multiply(w32[:, j, None, None], image[idx[:, j]], out=tap)
        acc += tap
    return np.clip(acc >> precision, 0, 255).astype(np.uint8)


def resize(
    image: np.ndarray, height: int, width: int, interpolation: str = "bicubic"
) -> np.ndarray:
    """Resize an HWC uint8 image to ``(height, width)`` as torchvision's antialiased uint8 resize.

    Args:
        image: ``(H, W, C)`` uint8 array.
        height: output height.
        width: output width.
        interpolation: ``"nearest"``, ``"bilinear"`` or ``"bicubic"``. Default ``"bicubic"``.

    Raises:
        ValueError: an unknown interpolation (the valid ones are listed).
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"interpolation must be one of {list(INTERPOLATIONS)}, got {interpolation!r}"
        )
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    if interpolation == "nearest":
        # torch's nearest: floor(i * (in / out)) computed in float32.
        rows = np.minimum(
            np.floor(np.arange(height, dtype=np.float32) * np.float32(h / height)), h - 1
        )
        cols = np.minimum(
            np.floor(np.arange(width, dtype=np.float32) * np.float32(w / width)), w - 1
        )
        return image[rows.astype(np.int64)][:, cols.astype(np.int64)]
    return resize_window(image, height, width, (0, 0, height, width), interpolation)


def resize_window(
    image: np.ndarray,
    height: int,
    width: int,
    window: tuple[int, int, int, int],
    interpolation: str = "bicubic",
) -> np.ndarray:
    """The ``(top, left, h, w)`` window of ``resize(image, height, width, interpolation)``,
    computing only that window's pixels (the same integers): a centre crop after the resize
    costs only what it keeps.

    Args:
        image: ``(H, W, C)`` uint8 array.
        height, width: the size of the whole resized image.
        window: ``(top, left, h, w)`` inside it.
        interpolation: ``"bilinear"`` or ``"bicubic"`` (``resize`` handles ``"nearest"``).
    """
    top, left, wh, ww = window
    h, w = image.shape[:2]
    if height != h:
        rows = _int16_weights(h, height, interpolation)
        # Only the input rows the kept output rows read go through the horizontal pass.
        xmin, k = rows[0], rows[1].shape[1]
        r0, r1 = int(xmin[top]), min(h, int(xmin[top + wh - 1]) + k)
        out = image[r0:r1]
    else:
        out = image[top : top + wh]
    if width != w:  # horizontal pass first, as torch's kernel does
        cols = _int16_weights(w, width, interpolation)
        out = _swap_axes(_pass(_swap_axes(out), cols, (left, left + ww)))
    else:
        out = np.ascontiguousarray(out[:, left : left + ww])
    if height != h:
        out = _pass(out, rows, (top, top + wh), offset=r0)
    return np.ascontiguousarray(out)
