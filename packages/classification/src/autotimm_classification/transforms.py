"""Training and evaluation transforms for uint8 ``(3, H, W)`` image tensors.

Every pipeline works on uint8 for as long as it can and converts to float and normalizes last,
which is the cheap order. Two backends build the same presets: torchvision's ``transforms.v2``
(default) and albumentations (OpenCV; its crops are not antialiased; the
``autotimm-classification[albumentations]`` extra). Sizes, mean/std, interpolation and crop
fraction come from a :class:`~autotimm_core.data.DataConfig`, the model's data contract.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torchvision.transforms import v2

from autotimm_core._imports import require
from autotimm_core.data import BACKENDS, PRESETS, DataConfig, mean_fill, seed_albumentations
from autotimm_core.validation import check_choice

#: Largest ``image_size`` at which the ``"default"`` preset crops as ``"light"`` does (resize, then
#: a random crop at that scale) instead of random-resized cropping: a crop of 8% of the area at
#: 32 px is 9 px wide and loses the object, which is why CIFAR-sized recipes random-crop instead.
SMALL_IMAGE_SIZE = 64


def _resize_size(image_size: int, crop_pct: float) -> int:
    return math.floor(image_size / crop_pct)


def build_classification_transform(
    train: bool,
    config: DataConfig | None = None,
    *,
    preset: str = "default",
    backend: str = "torchvision",
    normalize: bool = True,
    image_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    interpolation: str | None = None,
    crop_pct: float | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A transform from a uint8 ``(3, H, W)`` tensor to a normalized float ``(3, S, S)`` tensor
    (or, with ``normalize=False``, a uint8 one for ``autotimm_core.data.normalize_images`` to
    finish on the device).

    Args:
        train: build the training pipeline (augmented per ``preset``); False builds the
            evaluation one (resize the short side to ``image_size / crop_pct``, center crop).
        config: the image size, mean, std, interpolation and crop fraction, usually a model's or
            a data module's ``data_config``. Default None: ``DataConfig()`` (224 px, ImageNet's
            mean and std, bicubic, crop_pct 0.875).
        preset: training augmentation: ``"none"`` (the evaluation pipeline), ``"light"``
            (resize to the evaluation scale, random crop, horizontal flip), ``"default"``
            (random-resized crop, flip; at ``image_size <= 64``, ``SMALL_IMAGE_SIZE``, the
            ``"light"`` pipeline, which keeps the object's scale) or ``"strong"`` (random-resized
            crop and flip plus one random TrivialAugment-style op and random erasing).
            Default ``"default"``.
        backend: ``"torchvision"`` (transforms.v2) or ``"albumentations"``. Default
            ``"torchvision"``.
        normalize: end with the float conversion and normalization. False leaves the image
            uint8 (random erasing then fills with the mean colour, which normalizes to 0, as
            it does on the normalized image). Default True.
        image_size: output side ``S``, replacing ``config``'s. Default None: ``config``'s.
        mean: per-channel mean (0-1 scale), replacing ``config``'s. Default None.
        std: per-channel standard deviation, replacing ``config``'s. Default None.
        interpolation: ``"nearest"``, ``"bilinear"`` or ``"bicubic"``, replacing ``config``'s.
            Default None.
        crop_pct: fraction of the resized image the evaluation center crop keeps, replacing
            ``config``'s. Default None.

    Raises:
        ValueError: an unknown preset, backend or interpolation, a bad size or mean/std, or a
            config whose ``resize_mode`` is not ``"crop"`` (the message names the parameter and
            lists the valid values).
    """
    check_choice("augmentation_preset", preset, PRESETS)
    check_choice("transform_backend", backend, BACKENDS)
    # DataConfig checks every value and names the bad one.
    cfg = (config or DataConfig()).with_values(
        image_size=image_size, mean=mean, std=std, interpolation=interpolation, crop_pct=crop_pct
    )
    if cfg.resize_mode != "crop":
        raise ValueError(
            f"classification transforms resize with resize_mode='crop', got "
            f"resize_mode={cfg.resize_mode!r}"
        )
    mode = "eval" if not train or preset == "none" else preset
    if mode == "default" and cfg.image_size <= SMALL_IMAGE_SIZE:
        mode = "light"
    build = _albumentations if backend == "albumentations" else _torchvision
    return build(mode, cfg, normalize)


def _torchvision(mode: str, cfg: DataConfig, normalize: bool) -> v2.Compose:
    size, interp = cfg.image_size, v2.InterpolationMode(cfg.interpolation)
    if mode == "eval":
        ops: list[Any] = [
            v2.Resize(_resize_size(size, cfg.crop_pct), interpolation=interp, antialias=True),
            v2.CenterCrop(size),
        ]
    elif mode == "light":
        ops = [
            v2.Resize(_resize_size(size, cfg.crop_pct), interpolation=interp, antialias=True),
            v2.RandomCrop(size),
            v2.RandomHorizontalFlip(),
        ]
    else:
        ops = [
            v2.RandomResizedCrop(size, interpolation=interp, antialias=True),
            v2.RandomHorizontalFlip(),
        ]
        if mode == "strong":
            # torchvision's tensor rotate/shear/translate take nearest or bilinear only.
            nearest = interp == v2.InterpolationMode.NEAREST
            warp = v2.InterpolationMode.NEAREST if nearest else v2.InterpolationMode.BILINEAR
            ops.append(v2.TrivialAugmentWide(interpolation=warp))
    # Float conversion and normalization last: everything above runs on uint8.
    if normalize:
        ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(cfg.mean), list(cfg.std))]
    if mode == "strong":
        ops.append(v2.RandomErasing(p=0.25, value=0 if normalize else mean_fill(cfg.mean)))
    return v2.Compose(ops)


class AlbumentationsTransform:
    """Runs an albumentations pipeline on a uint8 ``(3, H, W)`` tensor (it wants HWC numpy)."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        seed_albumentations(self.pipeline)  # follows torch's generator: exact resume
        out = self.pipeline(image=image.permute(1, 2, 0).numpy())["image"]
        return out if isinstance(out, torch.Tensor) else torch.from_numpy(out).permute(2, 0, 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.pipeline!r})"


def _albumentations(mode: str, cfg: DataConfig, normalize: bool) -> AlbumentationsTransform:
    # Imported here: albumentations is an optional extra, needed only for this backend.
    A = require(
        "albumentations",
        "autotimm-classification[albumentations]",
        purpose="transform_backend='albumentations'",
    )
    import cv2
    from albumentations.pytorch import ToTensorV2

    size, mean, std, crop_pct = cfg.image_size, cfg.mean, cfg.std, cfg.crop_pct
    interp = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR}.get(
        cfg.interpolation, cv2.INTER_CUBIC
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
            ops.append(A.Erasing(p=0.25, fill=tuple(mean_fill(mean))))
    if normalize:
        ops.append(A.Normalize(mean=tuple(mean), std=tuple(std)))
    ops.append(ToTensorV2())
    return AlbumentationsTransform(A.Compose(ops))
