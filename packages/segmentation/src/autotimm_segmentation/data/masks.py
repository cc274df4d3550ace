"""Reading class maps: palette and greyscale PNG masks, and COCO polygons rasterised.

A mask holds one class index per pixel (``ignore_index``, 255 by default, for pixels to leave
out). Palette PNGs (VOC's ``SegmentationClass``) hold the indices behind their colours; greyscale
PNGs hold them as grey values. An RGB mask has no indices to read and is refused (unless its
three channels are equal, a greyscale map saved as RGB).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

#: Classes of Pascal VOC's segmentation masks, by index (255 marks object borders).
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


def _listing(values: Sequence[int], limit: int = 10) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}]"


def read_mask(path: str | Path) -> torch.Tensor:
    """A mask file as a uint8 ``(H, W)`` tensor of class indices.

    Raises:
        ValueError: an RGB(A) mask without a palette (naming the file and some of its colours),
            or a 16-bit mask with values above 255.
    """
    path = Path(path)
    with Image.open(path) as im:
        mode = im.mode
        if mode in ("RGB", "RGBA"):
            rgb = np.asarray(im.convert("RGB"))
            if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
                arr = rgb[..., 0]
            else:
                colours = np.unique(rgb.reshape(-1, 3), axis=0)[:5]
                shown = ", ".join(str(tuple(int(v) for v in c)) for c in colours)
                raise ValueError(
                    f"mask {path} is an RGB image without a palette (colours such as {shown}): "
                    "masks must hold class indices, as palette (mode 'P') or greyscale PNGs; "
                    "convert each colour to its class index"
                )
        elif mode == "LA":
            arr = np.asarray(im)[..., 0]
        else:  # "P" (indices behind the palette), "L", "1", "I;16", "I"
            arr = np.asarray(im)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.dtype != np.uint8:
        top = int(arr.max()) if arr.size else 0
        if top > 255 or int(arr.min()) < 0:
            raise ValueError(
                f"mask {path} holds values up to {top}: masks are 8-bit class indices (0-255)"
            )
        arr = arr.astype(np.uint8)
    return torch.from_numpy(np.array(arr, dtype=np.uint8, copy=True))


def check_mask(
    mask: torch.Tensor,
    num_classes: int,
    ignore_index: int,
    source: Any,
    image_size: tuple[int, int] | None = None,
    image_source: Any = None,
) -> None:
    """Refuse a mask whose values are not classes nor ``ignore_index``, or whose size is not
    the image's; the error names the file and the values.

    Args:
        mask: the ``(H, W)`` class map.
        num_classes: valid classes are ``0..num_classes-1``.
        ignore_index: the one other valid value.
        source: the mask's file (or what it came from), for the message.
        image_size: ``(H, W)`` of its image, checked when given. Default None.
        image_source: the image's file, for the message. Default None.
    """
    if image_size is not None and tuple(mask.shape[-2:]) != tuple(image_size):
        raise ValueError(
            f"mask {source} is {mask.shape[-1]}x{mask.shape[-2]} (WxH) but its image "
            f"{image_source} is {image_size[1]}x{image_size[0]}: a mask must have its image's size"
        )
    values = torch.unique(mask).tolist()
    bad = [v for v in values if v >= num_classes and v != ignore_index]
    if bad:
        raise ValueError(
            f"mask {source} has values {_listing(bad)} outside the {num_classes} classes "
            f"(0-{num_classes - 1}) and not the ignore value {ignore_index}; "
            "give num_classes/class_names (or classes.txt) that cover them, or ignore_index"
        )


def rasterise_coco(
    coco: Any, image_id: int, cat_to_label: dict[int, int], ignore_index: int
) -> torch.Tensor:
    """The semantic mask of one COCO image: background 0, each category's label where its
    instances lie (larger instances first, so smaller ones stay visible on top), crowd regions
    ``ignore_index``.

    Args:
        coco: a ``pycocotools.coco.COCO`` of the annotation file.
        image_id: the image's id.
        cat_to_label: category id to class index.
        ignore_index: value of crowd regions.
    """
    info = coco.imgs[image_id]
    mask = np.zeros((int(info["height"]), int(info["width"])), dtype=np.uint8)
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
    for ann in sorted(anns, key=lambda a: -float(a.get("area", 0.0))):
        if not ann.get("segmentation"):
            continue
        pixels = coco.annToMask(ann).astype(bool)
        mask[pixels] = ignore_index if ann.get("iscrowd", 0) else cat_to_label[ann["category_id"]]
    return torch.from_numpy(mask)
