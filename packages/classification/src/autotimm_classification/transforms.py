"""Training and evaluation transforms for uint8 ``(3, H, W)`` image tensors.

Every pipeline works on uint8 for as long as it can and converts to float and normalizes last,
which is the cheap order. Two backends build the same presets: torchvision's ``transforms.v2``
(default) and albumentations (OpenCV; its crops are not antialiased).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torchvision.transforms import v2

from autotimm_core.validation import check_choice

#: Augmentation presets for the training set; evaluation is always resize + center crop.
PRESETS = ("none", "light", "default", "strong")
#: Transform backends.
BACKENDS = ("torchvision", "albumentations")
#: ImageNet statistics, used when no backbone tells otherwise.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Fraction of the resized image kept by the evaluation center crop (timm's default).
DEFAULT_CROP_PCT = 0.875

_INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


def _resize_size(image_size: int, crop_pct: float) -> int:
    return math.floor(image_size / crop_pct)


def build_transform(
    train: bool,
    image_size: int = 224,
    preset: str = "default",
    backend: str = "torchvision",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    interpolation: str = "bilinear",
    crop_pct: float = DEFAULT_CROP_PCT,
    normalize: bool = True,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A transform from a uint8 ``(3, H, W)`` tensor to a normalized float ``(3, S, S)`` tensor
    (or, with ``normalize=False``, a uint8 one for :func:`normalize_images` to finish).

    Args:
        train: build the training pipeline (augmented per ``preset``); False builds the
            evaluation one (resize the short side to ``image_size / crop_pct``, center crop).
        image_size: output side length ``S``. Default 224.
        preset: training augmentation: ``"none"`` (the evaluation pipeline), ``"light"``
            (resize, random crop, horizontal flip), ``"default"`` (random-resized crop, flip) or
            ``"strong"`` (default plus one random TrivialAugment-style op and random erasing).
            Default ``"default"``.
        backend: ``"torchvision"`` (transforms.v2, default) or ``"albumentations"``.
        mean: per-channel mean for normalization (0-1 scale). Default ImageNet's.
        std: per-channel standard deviation for normalization. Default ImageNet's.
        interpolation: ``"nearest"``, ``"bilinear"`` (default) or ``"bicubic"``.
        crop_pct: fraction of the resized image the evaluation center crop keeps. Default 0.875.
        normalize: end with the float conversion and normalization. False leaves the image
            uint8 (random erasing then fills with the mean colour, which normalizes to 0, as
            it does on the normalized image). Default True.

    Raises:
        ValueError: an unknown preset, backend or interpolation, or a bad size (the message lists
            the valid values).
    """
    check_choice("augmentation_preset", preset, PRESETS)
    check_choice("transform_backend", backend, BACKENDS)
    check_choice("interpolation", interpolation, _INTERPOLATIONS)
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct!r}")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values (RGB), got mean={mean!r}, std={std!r}")
    mode = "eval" if not train or preset == "none" else preset
    if backend == "albumentations":
        return _albumentations(mode, image_size, mean, std, interpolation, crop_pct, normalize)
    return _torchvision(mode, image_size, mean, std, interpolation, crop_pct, normalize)


def normalize_images(
    images: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """uint8 images, ``(3, H, W)`` or ``(N, 3, H, W)`` on any device, to normalized float32.

    Equal (to float rounding) to ``ToDtype(float32, scale=True)`` then ``Normalize(mean, std)``,
    in one conversion and one fused subtract-divide. A float tensor is returned unchanged: it
    is taken to be normalized already.
    """
    if images.dtype != torch.uint8:
        return images
    m, s = _scaled_stats(tuple(mean), tuple(std), images.device)
    return images.float().sub_(m).div_(s)


@functools.lru_cache(maxsize=16)
def _scaled_stats(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    # Made once per device: building them per batch would copy to the GPU (and wait) each step.
    m = torch.tensor([255.0 * v for v in mean], device=device).view(3, 1, 1)
    s = torch.tensor([255.0 * v for v in std], device=device).view(3, 1, 1)
    return m, s


def _mean_fill(mean: Sequence[float]) -> list[int]:
    """The uint8 colour that normalizes to (nearly) 0."""
    return [round(255 * v) for v in mean]


def _torchvision(
    mode: str,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str,
    crop_pct: float,
    normalize: bool = True,
) -> v2.Compose:
    interp = v2.InterpolationMode(interpolation)
    if mode == "eval":
        ops: list[Any] = [
            v2.Resize(_resize_size(size, crop_pct), interpolation=interp, antialias=True),
            v2.CenterCrop(size),
        ]
    elif mode == "light":
        ops = [
            v2.Resize(_resize_size(size, crop_pct), interpolation=interp, antialias=True),
            v2.RandomCrop(size),
            v2.RandomHorizontalFlip(),
        ]
    else:
        ops = [
            v2.RandomResizedCrop(size, interpolation=interp, antialias=True),
            v2.RandomHorizontalFlip(),
        ]
        if mode == "strong":
            ops.append(v2.TrivialAugmentWide(interpolation=interp))
    # Float conversion and normalization last: everything above runs on uint8.
    if normalize:
        ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    if mode == "strong":
        ops.append(v2.RandomErasing(p=0.25, value=0 if normalize else _mean_fill(mean)))
    return v2.Compose(ops)


class AlbumentationsTransform:
    """Runs an albumentations pipeline on a uint8 ``(3, H, W)`` tensor (it wants HWC numpy)."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        out = self.pipeline(image=image.permute(1, 2, 0).numpy())["image"]
        return out if isinstance(out, torch.Tensor) else torch.from_numpy(out).permute(2, 0, 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.pipeline!r})"


def _albumentations(
    mode: str,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str,
    crop_pct: float,
    normalize: bool = True,
) -> AlbumentationsTransform:
    import albumentations as A
    import cv2
    from albumentations.pytorch import ToTensorV2

    interp = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR}.get(
        interpolation, cv2.INTER_CUBIC
    )
    if mode == "eval":
        ops: list[Any] = [
            A.SmallestMaxSize(max_size=_resize_size(size, crop_pct), interpolation=interp),
            A.CenterCrop(size, size),
        ]
    elif mode == "light":
        ops = [
            A.SmallestMaxSize(max_size=_resize_size(size, crop_pct), interpolation=interp),
            A.RandomCrop(size, size),
            A.HorizontalFlip(),
        ]
    else:
        ops = [A.RandomResizedCrop(size=(size, size), interpolation=interp), A.HorizontalFlip()]
        if mode == "strong":
            # One randomly chosen photometric or geometric op per image, as TrivialAugment does.
            ops.append(
                A.OneOf(
                    [
                        A.ColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0),
                        A.Equalize(p=1.0),
                        A.Posterize(num_bits=(4, 8), p=1.0),
                        A.Solarize(p=1.0),
                        A.Sharpen(p=1.0),
                        A.Affine(rotate=(-30, 30), p=1.0),
                        A.Affine(shear=(-15, 15), p=1.0),
                        A.Affine(translate_percent=(-0.2, 0.2), p=1.0),
                    ],
                    p=1.0,
                )
            )
            ops.append(A.Erasing(p=0.25, fill=tuple(_mean_fill(mean))))
    if normalize:
        ops.append(A.Normalize(mean=tuple(mean), std=tuple(std)))
    ops.append(ToTensorV2())
    return AlbumentationsTransform(A.Compose(ops))
