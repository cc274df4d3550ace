"""Box-aware transforms: letterbox resize plus augmentation presets, with two backends.

Both backends take an RGB ``uint8`` ``(3, H, W)`` tensor (what ``autotimm_core.data.read_image``
gives) and xyxy boxes in its pixels, and return a ``uint8`` ``(3, S, S)`` tensor with the boxes
moved along (``S`` = the config's ``image_size``). Boxes are clipped to the image; boxes less than
``min_visibility`` visible or smaller than ``min_box_size`` are dropped. Normalization is left to
the device (the data module's ``on_after_batch_transfer``), so loaders move uint8 (4x less data).

Evaluation and ``ObjectDetector.predict`` use one letterbox, torchvision's, whatever the
training backend: predictions prepare images exactly as validation did, without albumentations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.ops import clip_boxes_to_image
from torchvision.transforms import v2

from autotimm_core._imports import require
from autotimm_core.data import (
    BACKENDS,
    PRESETS,
    DataConfig,
    Letterbox,
    letterbox_size,
    normalize_images,
    seed_albumentations,
)
from autotimm_core.data import as_letterbox_config as _as_letterbox_config
from autotimm_core.validation import check_choice

#: Grey used to pad the letterbox and fill areas exposed by affine transforms (YOLO's).
DEFAULT_FILL = 114
#: The augmentation steps of each preset, in order; each backend builds them with its library.
PRESET_STEPS: dict[str, tuple[str, ...]] = {
    "none": (),
    "light": ("hflip",),
    "default": ("hflip", "scale", "colour"),
    "strong": ("hflip", "scale", "colour", "crop"),
}


def letterbox_target(height: int, width: int, size: int) -> dict[str, Tensor]:
    """``scale`` (sx, sy: input pixels per original pixel) and ``orig_size`` (h, w) of an image
    letterboxed to ``size``: what ``ObjectDetector.postprocess`` maps boxes back with."""
    nh, nw = letterbox_size(height, width, size)
    return {
        "scale": torch.tensor([nw / width, nh / height], dtype=torch.float32),
        "orig_size": torch.tensor([height, width]),
    }


def as_letterbox_config(config: DataConfig | int) -> DataConfig:
    """The core's :func:`~autotimm_core.data.as_letterbox_config` for detection (boxes are
    mapped back through the letterbox scale)."""
    return _as_letterbox_config(config, "detection")


def _finish(
    image: Tensor,
    boxes: Tensor,
    visible_of: Tensor | None,
    labels: Tensor,
    iscrowd: Tensor,
    min_visibility: float,
    min_box_size: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Clip boxes to the image and drop the ones too hidden or too small (shared by both backends).

    ``visible_of``: each box's unclipped area, for the visible fraction; None where the backend
    has measured visibility itself.
    """
    clipped = clip_boxes_to_image(boxes, tuple(image.shape[-2:]))
    wh = clipped[:, 2:] - clipped[:, :2]
    area = wh.prod(dim=1)
    keep = (wh >= min_box_size).all(dim=1) & (area > 0)
    if min_visibility > 0 and visible_of is not None:
        keep &= area >= min_visibility * visible_of.clamp(min=1e-6)
    return image, clipped[keep], labels[keep], iscrowd[keep]


class BoxTransform:
    """What both backends share: ``pre`` steps on the original image, the letterbox, ``post``
    steps, then box clipping and filtering (and normalization when asked).

    Args:
        config: the DataConfig (``image_size``, ``interpolation`` of the letterbox resize,
            ``mean``/``std`` when normalizing), or an int ``image_size``.
        pre: the backend's transforms before the letterbox (custom pipelines go here).
        post: the backend's transforms after the letterbox (the presets). Default none.
        min_visibility: drop boxes less visible than this fraction. Default 0.0.
        min_box_size: drop boxes with a side shorter than this (output pixels). Default 1.0.
        fill: letterbox padding value. Default 114.
        normalize: return normalized float32 images (``normalize_on_device=False``) instead of
            uint8. Default False.
    """

    def __init__(
        self,
        config: DataConfig | int,
        pre: Sequence[Any] = (),
        post: Sequence[Any] = (),
        min_visibility: float = 0.0,
        min_box_size: float = 1.0,
        fill: int = DEFAULT_FILL,
        normalize: bool = False,
    ) -> None:
        self.config = as_letterbox_config(config)
        self.image_size = self.config.image_size
        self.min_visibility = min_visibility
        self.min_box_size = min_box_size
        self.fill = fill
        self.normalize = normalize
        self.pipeline = self._compose(list(pre), list(post))

    def _compose(self, pre: list[Any], post: list[Any]) -> Any:
        raise NotImplementedError

    def _apply(self, image: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """The pipeline on one image: image, boxes, the index of the input box each output box
        came from, and the unclipped areas (None when visibility is already applied)."""
        raise NotImplementedError

    def __call__(
        self, image: Tensor, boxes: Any, labels: Any, iscrowd: Any
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Transform one image and its targets.

        Args:
            image: ``uint8`` ``(3, H, W)`` RGB tensor.
            boxes: ``(n, 4)`` xyxy boxes in its pixels (array or tensor); clipped to it first.
            labels: ``(n,)`` labels.
            iscrowd: ``(n,)`` crowd flags.

        Returns:
            The image ``(3, S, S)``, boxes ``(m, 4)`` float32, labels ``(m,)`` int64 and crowd
            flags ``(m,)`` bool of the boxes kept.
        """
        if not (isinstance(image, Tensor) and image.ndim == 3 and image.shape[0] == 3):
            shape = tuple(image.shape) if hasattr(image, "shape") else type(image).__name__
            raise ValueError(f"image must be a (3, H, W) uint8 tensor, got {shape}")
        raw = torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4)
        boxes = clip_boxes_to_image(raw, tuple(image.shape[-2:]))
        out_img, out_boxes, index, visible_of = self._apply(image, boxes)
        img, out_boxes, out_labels, crowd = _finish(
            out_img.contiguous(),
            out_boxes,
            visible_of,
            torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)[index],
            torch.as_tensor(np.asarray(iscrowd), dtype=torch.bool).reshape(-1)[index],
            self.min_visibility,
            self.min_box_size,
        )
        if self.normalize:
            img = normalize_images(img, self.config.mean, self.config.std)
        return img, out_boxes, out_labels, crowd


class AlbumentationsTransform(BoxTransform):
    """albumentations pipeline: ``pre`` on the original image, letterbox, then ``post``.

    Arguments as :class:`BoxTransform`; needs the ``autotimm-detection[albumentations]`` extra.
    """

    def _compose(self, pre: list[Any], post: list[Any]) -> Any:
        A = _albumentations()
        import cv2

        size = self.image_size
        return A.Compose(
            [
                *pre,
                A.LongestMaxSize(
                    max_size=size, interpolation=_CV2_INTERPOLATION[self.config.interpolation]
                ),
                A.PadIfNeeded(
                    min_height=size,
                    min_width=size,
                    position="top_left",
                    border_mode=cv2.BORDER_CONSTANT,
                    fill=self.fill,
                ),
                *post,
            ],
            # albumentations measures visibility itself (it clips before we see the boxes); the
            # index field tracks which input box each output box came from.
            bbox_params=A.BboxParams(
                format="pascal_voc",
                label_fields=["index"],
                clip=True,
                min_visibility=self.min_visibility,
            ),
        )

    def _apply(self, image: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        seed_albumentations(self.pipeline)  # follows torch's generator: exact resume
        hwc = np.ascontiguousarray(image.permute(1, 2, 0).numpy())  # albumentations works on HWC
        out = self.pipeline(image=hwc, bboxes=boxes.numpy(), index=np.arange(len(boxes)))
        index = torch.as_tensor(np.asarray(out["index"], dtype=np.int64))
        new_boxes = torch.as_tensor(np.asarray(out["bboxes"], dtype=np.float32)).reshape(-1, 4)
        img = torch.from_numpy(np.ascontiguousarray(out["image"])).permute(2, 0, 1)
        return img, new_boxes, index, None


_CV2_INTERPOLATION = {"nearest": 0, "bilinear": 1, "bicubic": 2}  # cv2.INTER_NEAREST/LINEAR/CUBIC


class TorchvisionTransform(BoxTransform):
    """torchvision.transforms.v2 pipeline with ``tv_tensors.BoundingBoxes``: ``pre``, letterbox,
    ``post``. Arguments and output as :class:`BoxTransform`."""

    def _compose(self, pre: list[Any], post: list[Any]) -> Any:
        letterbox = Letterbox(self.image_size, self.fill, interpolation=self.config.interpolation)
        return v2.Compose([*pre, letterbox, *post])

    def _apply(self, image: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        h, w = image.shape[-2:]
        # The same boxes twice, through the same random parameters: clamped to the canvas after
        # every step (what survives) and never clamped (the full box), for the visible fraction.
        clamped = tv_tensors.BoundingBoxes(
            boxes, format="XYXY", canvas_size=(h, w), clamping_mode="hard"
        )
        full = tv_tensors.BoundingBoxes(
            boxes, format="XYXY", canvas_size=(h, w), clamping_mode=None
        )
        out_img, out_boxes, out_full = self.pipeline(tv_tensors.Image(image), clamped, full)
        out_full = out_full.as_subclass(Tensor).float()
        wh = (out_full[:, 2:] - out_full[:, :2]).clamp(min=0)
        index = torch.arange(len(boxes))  # torchvision keeps every box: _finish filters
        return out_img.as_subclass(Tensor), out_boxes.as_subclass(Tensor).float(), index, wh.prod(1)


def _albumentations() -> Any:
    return require(
        "albumentations",
        "autotimm-detection[albumentations]",
        purpose="transform_backend='albumentations'",
    )


def _albumentations_steps(steps: Sequence[str], size: int, fill: int) -> list[Any]:
    A = _albumentations()
    import cv2

    make = {
        "hflip": lambda: A.HorizontalFlip(p=0.5),
        "scale": lambda: A.Affine(
            scale=(0.75, 1.25), keep_ratio=True, border_mode=cv2.BORDER_CONSTANT, fill=fill, p=0.5
        ),
        "colour": lambda: A.ColorJitter(
            brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5
        ),
        "crop": lambda: A.RandomResizedCrop(size=(size, size), scale=(0.25, 1.0), p=0.5),
    }
    return [make[s]() for s in steps]


def _torchvision_steps(steps: Sequence[str], size: int, fill: int) -> list[Any]:
    make = {
        "hflip": lambda: v2.RandomHorizontalFlip(p=0.5),
        "scale": lambda: v2.RandomApply(
            [v2.RandomAffine(degrees=0, scale=(0.75, 1.25), fill=fill)], p=0.5
        ),
        "colour": lambda: v2.RandomApply([v2.ColorJitter(0.2, 0.2, 0.2, 0.02)], p=0.5),
        "crop": lambda: v2.RandomApply(
            [v2.RandomResizedCrop((size, size), scale=(0.25, 1.0))], p=0.5
        ),
    }
    return [make[s]() for s in steps]


_BACKEND_CLASSES = {"albumentations": AlbumentationsTransform, "torchvision": TorchvisionTransform}
_BACKEND_STEPS = {"albumentations": _albumentations_steps, "torchvision": _torchvision_steps}


def _as_list(pipeline: Any) -> list[Any]:
    """The steps of a user pipeline: a Compose (either library), a list, or one transform."""
    if pipeline is None:
        return []
    if isinstance(pipeline, (list, tuple)):
        return list(pipeline)
    steps = getattr(pipeline, "transforms", None)
    if isinstance(steps, (list, tuple)):
        return list(steps)
    return [pipeline]


def build_detection_transform(
    config: DataConfig | int,
    preset: str = "default",
    backend: str = "torchvision",
    train: bool = True,
    custom: Any = None,
    min_visibility: float = 0.0,
    min_box_size: float = 1.0,
    fill: int = DEFAULT_FILL,
    normalize: bool = False,
) -> BoxTransform:
    """The transform of one split.

    Args:
        config: the DataConfig to prepare images for (``image_size``, the letterbox
            ``interpolation``, ``mean``/``std`` when ``normalize``), or an int ``image_size``
            (timm's default mean, std and bicubic resize).
        preset: ``"none"``, ``"light"`` (flip), ``"default"`` (flip, scale jitter, colour) or
            ``"strong"`` (adds random crops); only used when ``train``. Default ``"default"``.
        backend: ``"torchvision"`` (transforms.v2, default) or ``"albumentations"`` (needs the
            ``autotimm-detection[albumentations]`` extra). Evaluation (``train=False``) always
            uses the torchvision letterbox, the one ``ObjectDetector.predict`` uses.
        train: augment (True) or only letterbox (False). Default True.
        custom: your own pipeline of the backend's library, run on the original image before the
            letterbox and replacing the preset (training only). Default None.
        min_visibility: drop boxes less visible than this fraction after augmentation. Default 0.
        min_box_size: drop boxes with a side shorter than this (output pixels). Default 1.0.
        fill: padding value. Default 114.
        normalize: output normalized float32 images instead of uint8. Default False.

    Raises:
        ValueError: an unknown preset or backend (the choices are listed), or a config whose
            ``resize_mode`` is not ``"letterbox"``.
    """
    check_choice("augmentation_preset", preset, PRESETS)
    check_choice("transform_backend", backend, BACKENDS)
    config = as_letterbox_config(config)
    if not train:
        backend, custom = "torchvision", None
    pre = _as_list(custom)
    steps = PRESET_STEPS[preset] if train and custom is None else ()
    post = _BACKEND_STEPS[backend](steps, config.image_size, fill)
    return _BACKEND_CLASSES[backend](
        config,
        pre=pre,
        post=post,
        min_visibility=min_visibility,
        min_box_size=min_box_size,
        fill=fill,
        normalize=normalize,
    )
