"""The letterbox every dense task (detection, segmentation) prepares images with.

Longest side to the input size (aspect ratio kept), padded bottom/right to a square: no offset,
so predictions map back to the original image by one scale per axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from autotimm_core.data.config import DataConfig

__all__ = ["Letterbox", "as_letterbox_config", "letterbox_size"]


def letterbox_size(height: int, width: int, size: int) -> tuple[int, int]:
    """``(new_height, new_width)`` with the longest side equal to ``size`` (albumentations'
    rounding, at least 1 pixel)."""
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def as_letterbox_config(config: DataConfig | int, task: str = "this task") -> DataConfig:
    """``config`` itself, or for an int a letterbox DataConfig of that side (timm's defaults).

    Args:
        config: a DataConfig or an input side.
        task: the task named in the error (``"detection"``...). Default ``"this task"``.

    Raises:
        ValueError: a config whose ``resize_mode`` is not ``"letterbox"`` (predictions are
            mapped back to the original image through the letterbox), or a bad ``image_size``.
    """
    if not isinstance(config, DataConfig):
        config = DataConfig(image_size=config, resize_mode="letterbox")
    if config.resize_mode != "letterbox":
        raise ValueError(
            f"resize_mode must be 'letterbox' for {task} (predictions are mapped back through "
            f"the letterbox), got {config.resize_mode!r}"
        )
    return config


class Letterbox(v2.Transform):
    """Resize the longest side to ``size`` keeping aspect ratio, pad bottom/right to a square.

    Images are resized antialiased with ``interpolation``; boxes follow exactly; masks are
    resized nearest-neighbour at pixel centres (``NEAREST_EXACT``: plain ``NEAREST`` is off by
    half a pixel, shifting a mask against its image) and padded with ``mask_fill``.

    Args:
        size: output side.
        fill: padding of images (an int or one value per channel). Default 0.
        mask_fill: padding of masks (segmentation's ignore value). Default 255.
        interpolation: ``"nearest"``, ``"bilinear"`` or ``"bicubic"``. Default ``"bicubic"``.
    """

    def __init__(
        self,
        size: int,
        fill: int | Sequence[int] = 0,
        mask_fill: int = 255,
        interpolation: str = "bicubic",
    ) -> None:
        super().__init__()
        self.size = size
        self.fill = list(fill) if isinstance(fill, Sequence) else fill
        self.mask_fill = mask_fill
        self.interpolation = InterpolationMode(interpolation)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        image = next(i for i in flat_inputs if isinstance(i, tv_tensors.Image))
        h, w = F.get_size(image)
        return {"new": letterbox_size(h, w, self.size)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        nh, nw = params["new"]
        pad = [0, 0, self.size - nw, self.size - nh]
        if isinstance(inpt, tv_tensors.Mask):
            out = F.resize(inpt, [nh, nw], interpolation=InterpolationMode.NEAREST_EXACT)
            return F.pad(out, pad, fill=self.mask_fill)
        if isinstance(inpt, tv_tensors.Image):
            out = F.resize(inpt, [nh, nw], interpolation=self.interpolation, antialias=True)
            return F.pad(out, pad, fill=self.fill)
        if isinstance(inpt, tv_tensors.BoundingBoxes):
            return F.pad(F.resize(inpt, [nh, nw]), pad)
        return inpt
