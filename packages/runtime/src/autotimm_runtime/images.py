"""Images in (paths, PIL images, arrays) as RGB uint8 arrays, resized as the model was evaluated.

The rules are those of AutoTimm's evaluation transforms (torchvision's ``Resize`` of the short
side + ``CenterCrop`` for classification; the detector's letterbox, padded bottom/right), with
the resize of :mod:`autotimm_runtime.resize`, so the network sees the same uint8 pixels.
"""

from __future__ import annotations

import math
import os
from typing import Union

import numpy as np
from PIL import Image

from autotimm_runtime.resize import resize, resize_window

#: What ``predict`` accepts per image.
ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]


def read_image(item: ImageInput) -> np.ndarray:
    """An image as an ``(H, W, 3)`` uint8 RGB array.

    Args:
        item: a file path, a PIL image (any mode: converted to RGB), or a uint8 array
            ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` (alpha dropped).

    Raises:
        FileNotFoundError: a path that is not a file (named).
        OSError: a file Pillow cannot decode (named).
        TypeError: another type, or an array that is not uint8 (its dtype is named).
        ValueError: an array of another shape.
    """
    if isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image not found: {path}")
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
        except OSError as err:
            raise OSError(f"cannot decode image '{path}': {err}") from err
    if isinstance(item, Image.Image):
        return np.asarray(item.convert("RGB"))
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8:
            raise TypeError(
                f"image arrays must be uint8 (H, W, C), got dtype {item.dtype} (scale floats "
                "to 0-255 and cast with .astype(np.uint8))"
            )
        if item.ndim == 2:
            item = item[..., None]
        if item.ndim != 3 or item.shape[-1] not in (1, 3, 4):
            raise ValueError(
                f"image arrays must be (H, W) or (H, W, C) with C in 1, 3, 4, got {item.shape}"
            )
        if item.shape[-1] == 1:
            item = np.repeat(item, 3, axis=-1)
        return np.ascontiguousarray(item[..., :3])
    raise TypeError(
        f"images must be file paths, PIL images or uint8 numpy arrays, got {type(item).__name__}"
    )


def resize_crop(image: np.ndarray, size: int, crop_pct: float, interpolation: str) -> np.ndarray:
    """Classification's evaluation transform: short side to ``floor(size / crop_pct)``
    (long side ``int(short * long / short)``, as torchvision), then a centre crop to ``size``."""
    h, w = image.shape[:2]
    short_new = math.floor(size / crop_pct)
    if w <= h:
        new_w, new_h = short_new, int(short_new * h / w)
    else:
        new_h, new_w = short_new, int(short_new * w / h)
    if new_h >= size and new_w >= size and interpolation != "nearest":
        # Only the crop's pixels are computed (the same integers as resizing everything).
        top, left = round((new_h - size) / 2.0), round((new_w - size) / 2.0)
        return resize_window(image, new_h, new_w, (top, left, size, size), interpolation)
    out = resize(image, new_h, new_w, interpolation)
    if new_h < size or new_w < size:  # torchvision pads a too-small image with zeros
        pad_h, pad_w = max(size - new_h, 0), max(size - new_w, 0)
        out = np.pad(
            out,
            ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)),
        )
        new_h, new_w = out.shape[:2]
    top = round((new_h - size) / 2.0)
    left = round((new_w - size) / 2.0)
    return out[top : top + size, left : left + size]


def letterbox(
    image: np.ndarray, size: int, interpolation: str, fill: int
) -> tuple[np.ndarray, tuple[float, float]]:
    """Detection's letterbox: longest side to ``size``, padded bottom/right with ``fill``.

    Returns:
        The ``(size, size, 3)`` image and ``(sx, sy)``, input pixels per original pixel.
    """
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    out = np.full((size, size, 3), fill, np.uint8)
    out[:nh, :nw] = resize(image, nh, nw, interpolation)
    return out, (nw / w, nh / h)
