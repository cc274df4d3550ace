"""Mask-aware transforms: letterbox resize plus augmentation presets, with two backends.

Both backends take an RGB ``uint8`` ``(3, H, W)`` tensor (what ``autotimm_core.data.read_image``
gives) and its class map, a ``uint8`` ``(H, W)`` tensor, and return both at ``(S, S)`` (``S`` =
the config's ``image_size``) through the same geometric steps. Masks are always resized with
nearest-neighbour (no invented classes) and every pixel a step exposes (letterbox padding,
crops past the border, rotation corners) gets ``ignore_index``, so the loss and the metrics
leave it out. Normalization is left to the device (the data module's ``on_after_batch_transfer``).

Evaluation and ``SemanticSegmentor.predict`` use one letterbox, torchvision's, whatever the
training backend: the longest side to ``S``, aspect ratio kept, padding at the bottom and right,
so predictions are cropped and resized back to the original image exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from autotimm_core._imports import require
from autotimm_core.data import (
    BACKENDS,
    PRESETS,
    DataConfig,
    Letterbox,
    letterbox_size,
    mean_fill,
    normalize_images,
    seed_albumentations,
)
from autotimm_core.data import as_letterbox_config as _as_letterbox_config
from autotimm_core.validation import check_choice

#: The augmentation steps of each preset, in order; each backend builds them with its library.
PRESET_STEPS: dict[str, tuple[str, ...]] = {
    "none": (),
    "light": ("hflip",),
    "default": ("scale_crop", "hflip", "colour"),
    "strong": ("scale_crop", "hflip", "colour", "rotate"),
}
#: Scale range of the scale-crop step (relative to the letterbox size), per preset.
SCALE_RANGES = {"default": (0.5, 2.0), "strong": (0.25, 2.5)}
_CV2_INTERPOLATION = {"nearest": 0, "bilinear": 1, "bicubic": 2}  # cv2.INTER_NEAREST/LINEAR/CUBIC


def as_letterbox_config(config: DataConfig | int) -> DataConfig:
    """The core's :func:`~autotimm_core.data.as_letterbox_config` for segmentation (masks are
    mapped back through the letterbox)."""
    return _as_letterbox_config(config, "segmentation")


class RandomScale(v2.Transform):
    """Resize to the letterbox size of ``size`` times a random factor in ``scale_range``
    (aspect ratio kept; masks with pixel-centred nearest-neighbour, unlike v2.ScaleJitter).

    Args:
        size: the side the longest side is scaled to at factor 1.
        scale_range: range of the factor.
        interpolation: image interpolation name. Default ``"bicubic"``.
    """

    def __init__(
        self, size: int, scale_range: tuple[float, float], interpolation: str = "bicubic"
    ) -> None:
        super().__init__()
        self.size = size
        self.scale_range = scale_range
        self.interpolation = InterpolationMode(interpolation)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        image = next(i for i in flat_inputs if isinstance(i, tv_tensors.Image))
        h, w = F.get_size(image)
        low, high = self.scale_range
        factor = low + float(torch.rand(())) * (high - low)
        return {"new": letterbox_size(h, w, max(1, round(self.size * factor)))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            return F.resize(inpt, params["new"], interpolation=InterpolationMode.NEAREST_EXACT)
        if isinstance(inpt, tv_tensors.Image):
            return F.resize(inpt, params["new"], interpolation=self.interpolation, antialias=True)
        return inpt


class SegmentationTransform:
    """An image and its mask through the same steps (see the module's description).

    Args:
        config: the DataConfig (``image_size``, ``interpolation``, ``mean``/``std`` when
            normalizing), or an int ``image_size``.
        steps: preset steps (see :data:`PRESET_STEPS`), training only. Default none.
        backend: ``"torchvision"`` or ``"albumentations"``. Default ``"torchvision"``.
        ignore_index: mask value of exposed pixels. Default 255.
        scale_range: scale range of the ``"scale_crop"`` step. Default (0.5, 2.0).
        normalize: return normalized float32 images instead of uint8. Default False.
    """

    def __init__(
        self,
        config: DataConfig | int,
        steps: Sequence[str] = (),
        backend: str = "torchvision",
        ignore_index: int = 255,
        scale_range: tuple[float, float] = (0.5, 2.0),
        normalize: bool = False,
    ) -> None:
        self.config = as_letterbox_config(config)
        self.steps = tuple(steps)
        self.backend = check_choice("transform_backend", backend, BACKENDS)
        self.ignore_index = int(ignore_index)
        self.scale_range = scale_range
        self.normalize = normalize
        # The mean colour normalizes to 0: padding looks like "nothing" to the network.
        self.fill = mean_fill(self.config.mean)
        build = _albumentations_pipeline if backend == "albumentations" else _torchvision_pipeline
        self.pipeline = build(self)

    @property
    def image_size(self) -> int:
        return self.config.image_size

    def __call__(self, image: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """``(image, mask)`` at ``(S, S)``: uint8 ``(3, S, S)`` (or normalized float) and uint8
        ``(S, S)``; ``mask=None`` gives ``(image, None)``."""
        if mask is None:
            blank = torch.full(image.shape[-2:], self.ignore_index, dtype=torch.uint8)
            out, _ = self._apply(image, blank)
            return out, None
        if mask.shape[-2:] != image.shape[-2:]:
            raise ValueError(
                f"mask size {tuple(mask.shape[-2:])} differs from image size "
                f"{tuple(image.shape[-2:])}"
            )
        out, out_mask = self._apply(image, mask)
        return out, out_mask

    def _apply(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        if self.backend == "albumentations":
            seed_albumentations(self.pipeline)  # follows torch's generator: exact resume
            res = self.pipeline(
                image=image.permute(1, 2, 0).numpy(), mask=mask.numpy().astype(np.uint8)
            )
            img = torch.from_numpy(np.ascontiguousarray(res["image"])).permute(2, 0, 1)
            out_mask = torch.from_numpy(np.ascontiguousarray(res["mask"]))
        else:
            img, m = self.pipeline(tv_tensors.Image(image), tv_tensors.Mask(mask[None]))
            img, out_mask = img.as_subclass(Tensor), m.as_subclass(Tensor)[0]
        img = img.contiguous()
        if self.normalize:
            img = normalize_images(img, self.config.mean, self.config.std)
        return img, out_mask.to(torch.uint8).contiguous()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.pipeline!r})"


def _torchvision_pipeline(t: SegmentationTransform) -> v2.Compose:
    size = t.image_size
    fills = {tv_tensors.Image: list(t.fill), tv_tensors.Mask: t.ignore_index}
    ops: list[Any] = []
    for step in t.steps:
        if step == "scale_crop":
            # Letterbox size times a random scale, then a random square crop (padded with the
            # ignore value where the scaled image is smaller than the crop).
            ops += [
                RandomScale(size, t.scale_range, t.config.interpolation),
                v2.RandomCrop(size, pad_if_needed=True, fill=fills),
            ]
        elif step == "hflip":
            ops.append(v2.RandomHorizontalFlip(p=0.5))
        elif step == "colour":
            ops.append(v2.RandomApply([v2.ColorJitter(0.3, 0.3, 0.3, 0.03)], p=0.5))
        elif step == "rotate":
            ops.append(v2.RandomApply([v2.RandomRotation(10, fill=fills)], p=0.5))
    if "scale_crop" not in t.steps:
        ops.insert(0, Letterbox(size, t.fill, t.ignore_index, t.config.interpolation))
    return v2.Compose(ops)


def _albumentations_pipeline(t: SegmentationTransform) -> Any:
    A = require(
        "albumentations",
        "autotimm-segmentation[albumentations]",
        purpose="transform_backend='albumentations'",
    )
    import cv2

    size = t.image_size
    interp = _CV2_INTERPOLATION[t.config.interpolation]
    fill = tuple(t.fill)
    pad = {"border_mode": cv2.BORDER_CONSTANT, "fill": fill, "fill_mask": t.ignore_index}
    # OpenCV's INTER_NEAREST samples half a pixel off the centres that its other modes (and
    # torchvision) use, shifting masks against their images; INTER_NEAREST_EXACT does not.
    resize = {"interpolation": interp, "mask_interpolation": cv2.INTER_NEAREST_EXACT}
    ops: list[Any] = [A.LongestMaxSize(max_size=size, **resize)]
    for step in t.steps:
        if step == "scale_crop":
            low, high = t.scale_range
            ops += [
                # RandomScale's limits are offsets from 1.
                A.RandomScale(scale_limit=(low - 1.0, high - 1.0), p=1.0, **resize),
                A.PadIfNeeded(size, size, position="random", **pad),
                A.RandomCrop(size, size),
            ]
        elif step == "hflip":
            ops.append(A.HorizontalFlip(p=0.5))
        elif step == "colour":
            ops.append(A.ColorJitter(0.3, 0.3, 0.3, 0.03, p=0.5))
        elif step == "rotate":
            ops.append(
                A.Affine(
                    rotate=(-10, 10),
                    interpolation=interp,
                    mask_interpolation=cv2.INTER_NEAREST,  # warps sample at pixel centres
                    p=0.5,
                    **pad,
                )
            )
    if "scale_crop" not in t.steps:
        ops.append(A.PadIfNeeded(size, size, position="top_left", **pad))
    return A.Compose(ops)


def build_segmentation_transform(
    config: DataConfig | int,
    preset: str = "default",
    backend: str = "torchvision",
    train: bool = True,
    ignore_index: int = 255,
    normalize: bool = False,
) -> SegmentationTransform:
    """The transform of one split: ``transform(image, mask) -> (image, mask)``.

    Args:
        config: the DataConfig to prepare images for (``image_size``, the image
            ``interpolation``, ``mean``/``std`` when ``normalize``), or an int ``image_size``.
        preset: ``"none"`` (letterbox only), ``"light"`` (letterbox, horizontal flip),
            ``"default"`` (random scale 0.5-2x of the letterbox size and a random square crop,
            flip, colour jitter) or ``"strong"`` (scale 0.25-2.5x, flip, colour, rotation up to
            10 degrees); only used when ``train``. Default ``"default"``.
        backend: ``"torchvision"`` (transforms.v2 with ``tv_tensors.Mask``, default) or
            ``"albumentations"`` (needs the ``autotimm-segmentation[albumentations]`` extra).
            Evaluation (``train=False``) always uses the torchvision letterbox, the one
            ``SemanticSegmentor.predict`` uses.
        train: augment (True) or only letterbox (False). Default True.
        ignore_index: mask value of the pixels a step exposes. Default 255.
        normalize: output normalized float32 images instead of uint8. Default False.

    Raises:
        ValueError: an unknown preset or backend (the choices are listed), or a config whose
            ``resize_mode`` is not ``"letterbox"``.
    """
    check_choice("augmentation_preset", preset, PRESETS)
    check_choice("transform_backend", backend, BACKENDS)
    if not 0 <= int(ignore_index) <= 255:
        raise ValueError(f"ignore_index must be in [0, 255] (8-bit masks), got {ignore_index!r}")
    if not train:
        backend = "torchvision"
    steps = PRESET_STEPS[preset] if train else ()
    return SegmentationTransform(
        config,
        steps=steps,
        backend=backend,
        ignore_index=ignore_index,
        scale_range=SCALE_RANGES.get(preset, (0.5, 2.0)),
        normalize=normalize,
    )
