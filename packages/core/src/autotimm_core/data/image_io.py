"""One image reader for every task: any image input to a 3-channel uint8 ``(3, H, W)`` tensor.

Data pipelines read files with :func:`read_image_rgb`; ``predict`` takes whatever a user has
(paths, PIL images, numpy arrays, tensors) through :func:`read_image`. Grey, alpha, palette,
16-bit and float inputs all come back as 8-bit RGB. :func:`check_image_file` finds broken files
cheaply, from their headers and ends.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image, read_file
from torchvision.transforms.v2 import functional as F

#: File extensions treated as images (lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# Markers that end a complete file: a truncated JPEG lacks its EOI, a truncated PNG its IEND.
_JPEG_SOI, _JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
_PNG_SIG, _PNG_IEND = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


def is_image_file(path: str | os.PathLike) -> bool:
    """True when the file name ends with one of ``IMAGE_EXTENSIONS`` (any case)."""
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def _to_rgb_uint8(img: torch.Tensor) -> torch.Tensor:
    # 16-bit PNGs decode to uint16: rescale to the full 8-bit range rather than clip.
    if img.dtype != torch.uint8:
        img = F.to_dtype(img, torch.uint8, scale=True)
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1).contiguous()
    elif img.shape[0] == 4:
        img = img[:3].contiguous()
    return img


def _scaled_grey(im: Image.Image) -> torch.Tensor:
    # 16/32-bit greyscale: PIL's convert("RGB") would clip, so scale by the maximum value.
    arr = np.asarray(im, dtype=np.float64)
    top = 65535.0 if im.mode.startswith("I;16") else max(float(arr.max()), 1.0)
    arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return torch.from_numpy(arr).unsqueeze(0).expand(3, -1, -1).contiguous()


def _read_with_pil(path: str) -> torch.Tensor:
    with Image.open(path) as im:
        if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            return _scaled_grey(im)
        rgb = im.convert("RGB")
        return F.pil_to_tensor(rgb)


def read_image_rgb(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file as a ``(3, H, W)`` uint8 tensor.

    JPEG, PNG, GIF and WEBP are decoded by ``torchvision.io`` (fast, no PIL round trip); other
    formats (BMP, TIFF...) fall back to PIL. Grey, grey+alpha, RGBA, palette and 16-bit images all
    come back as 8-bit RGB (alpha is dropped).

    Raises:
        OSError: the file cannot be read or decoded; the message names the file.
    """
    path = os.fspath(path)
    try:
        data = read_file(path)
        img = decode_image(data, mode=ImageReadMode.RGB)
        return _to_rgb_uint8(img)
    except (RuntimeError, ValueError) as tv_err:
        try:
            return _to_rgb_uint8(_read_with_pil(path))
        except Exception as pil_err:
            raise OSError(f"cannot decode image '{path}': {pil_err or tv_err}") from pil_err


def check_image_file(path: str | os.PathLike) -> str | None:
    """Cheap test for a broken image file; returns why it is broken, or None when it looks fine.

    Reads only the header (through PIL) and, for JPEG and PNG, the last bytes: an empty file, an
    unknown format, or a JPEG/PNG cut short is found without decoding the pixels.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty file"
        with path.open("rb") as f:
            head = f.read(8)
            f.seek(max(0, size - 16))
            tail = f.read()
        if head.startswith(_JPEG_SOI):
            # Some encoders pad after EOI, so look for it near the end rather than at it.
            if _JPEG_EOI not in tail:
                return "truncated JPEG (no end-of-image marker)"
        elif head.startswith(_PNG_SIG) and _PNG_IEND not in tail:
            return "truncated PNG (no IEND chunk)"
        with Image.open(path) as im:
            im.verify()  # checks PNG chunk CRCs; for other formats the header only
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return None


#: What :func:`read_image` accepts.
ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]


def read_image(item: ImageInput) -> torch.Tensor:
    """Any image input as a ``(3, H, W)`` uint8 RGB tensor.

    Args:
        item: a file path (read by :func:`read_image_rgb`); a PIL image (any mode); a numpy
            array ``(H, W)`` or ``(H, W, C)``; or a tensor ``(H, W)`` or ``(C, H, W)``. Arrays and
            tensors may have 1, 3 or 4 channels (alpha is dropped, grey is repeated) and be
            uint8, 16-bit integers (scaled to 8 bits) or floats in [0, 1] (scaled by 255).

    Raises:
        FileNotFoundError: a path that is not a file (named).
        OSError: a file that cannot be decoded (named).
        ValueError: an array or tensor of another shape (its shape is given).
        TypeError: anything else.
    """
    if isinstance(item, (str, os.PathLike)):
        if not os.path.isfile(item):
            raise FileNotFoundError(f"image not found: {os.fspath(item)}")
        return read_image_rgb(item)
    if isinstance(item, Image.Image):
        if item.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            return _to_rgb_uint8(_scaled_grey(item))
        return F.pil_to_tensor(item.convert("RGB"))
    if isinstance(item, np.ndarray):
        if item.ndim == 3:
            if item.shape[-1] not in (1, 3, 4):
                raise ValueError(
                    f"image arrays must be (H, W) or (H, W, C) with C in 1, 3, 4, got {item.shape}"
                )
            item = torch.from_numpy(np.ascontiguousarray(item)).permute(2, 0, 1)
        elif item.ndim == 2:
            item = torch.from_numpy(np.ascontiguousarray(item))
        else:
            raise ValueError(f"image arrays must be (H, W) or (H, W, C), got shape {item.shape}")
    if isinstance(item, torch.Tensor):
        img = item.detach().cpu()
        img = img.unsqueeze(0) if img.ndim == 2 else img
        if img.ndim != 3 or img.shape[0] not in (1, 3, 4):
            raise ValueError(
                f"image tensors must be (H, W) or (C, H, W) with C in 1, 3, 4, got "
                f"{tuple(item.shape)}"
            )
        if img.is_floating_point():
            # Float images are taken to be in [0, 1]; values outside are clipped.
            img = (img.float().clamp(0, 1) * 255).round().to(torch.uint8)
        elif img.dtype == torch.int32 or img.dtype == torch.int64:
            img = img.clamp(0, 255).to(torch.uint8)
        return _to_rgb_uint8(img)
    raise TypeError(
        f"images must be file paths, PIL images, numpy arrays or tensors, got {type(item).__name__}"
    )
