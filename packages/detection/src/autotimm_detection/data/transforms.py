"""Box-aware transforms: letterbox resize plus augmentation presets, with two backends.

Both backends take an RGB ``uint8`` HWC array and xyxy boxes in its pixels and return a ``uint8``
CHW tensor of ``image_size`` x ``image_size`` with the boxes moved along. Boxes are clipped to the
image; boxes less than ``min_visibility`` visible or smaller than ``min_box_size`` are dropped.
Normalisation is left to the model, so the loaders move uint8 (4x less data).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from autotimm_core.validation import check_choice

PRESETS = ("none", "light", "default", "strong")
BACKENDS = ("albumentations", "torchvision")
#: Grey used to pad the letterbox and fill areas exposed by affine transforms.
DEFAULT_FILL = 114


def letterbox_size(height: int, width: int, size: int) -> tuple[int, int]:
    """``(new_height, new_width)`` with the longest side equal to ``size`` (albumentations' rounding)."""
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _finish(
    image: Tensor,
    boxes: Tensor,
    before: Tensor,
    labels: Tensor,
    iscrowd: Tensor,
    min_visibility: float,
    min_box_size: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Clip boxes to the image and drop the ones too hidden or too small (shared by both backends)."""
    h, w = image.shape[-2:]
    clipped = boxes.clone()
    clipped[:, 0::2] = clipped[:, 0::2].clamp(0, w)
    clipped[:, 1::2] = clipped[:, 1::2].clamp(0, h)
    wh = clipped[:, 2:] - clipped[:, :2]
    area = wh.prod(dim=1)
    keep = (wh >= min_box_size).all(dim=1) & (area > 0)
    if min_visibility > 0:
        keep &= area >= min_visibility * before.clamp(min=1e-6)
    return image, clipped[keep], labels[keep], iscrowd[keep]


class AlbumentationsTransform:
    """albumentations pipeline: ``pre`` on the original image, letterbox, then ``post``.

    Args:
        image_size: output side. pre: transforms before the letterbox (custom pipelines go here).
        post: transforms after the letterbox. min_visibility: default 0.0. min_box_size: default 1.0.
        fill: letterbox padding value. Default 114.
    """

    def __init__(
        self,
        image_size: int,
        pre: Sequence[Any] = (),
        post: Sequence[Any] = (),
        min_visibility: float = 0.0,
        min_box_size: float = 1.0,
        fill: int = DEFAULT_FILL,
    ) -> None:
        import albumentations as A
        import cv2

        self.min_visibility = min_visibility
        self.min_box_size = min_box_size
        self.pipeline = A.Compose(
            [
                *pre,
                A.LongestMaxSize(max_size=image_size),
                A.PadIfNeeded(
                    min_height=image_size,
                    min_width=image_size,
                    position="top_left",
                    border_mode=cv2.BORDER_CONSTANT,
                    fill=fill,
                ),
                *post,
            ],
            # albumentations measures visibility itself (it clips before we see the boxes); the
            # index field tracks which input box each output box came from.
            bbox_params=A.BboxParams(
                format="pascal_voc",
                label_fields=["index"],
                clip=True,
                min_visibility=min_visibility,
            ),
        )

    def __call__(
        self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, iscrowd: np.ndarray
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        h, w = image.shape[:2]
        # albumentations rejects boxes outside the image: clip on the way in.
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
        # albumentations draws from generators of its own, seeded from the OS: drawing their seed
        # from torch's generator makes the augmentation follow seed_everything, the DataLoader's
        # per-worker seeds and the generator states a checkpoint restores (exact resume).
        seed = int(torch.randint(0, 2**63 - 1, ()))
        self.pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
        out = self.pipeline(image=image, bboxes=boxes, index=np.arange(len(boxes)))
        idx = torch.as_tensor(np.asarray(out["index"], dtype=np.int64))
        new_boxes = torch.as_tensor(np.asarray(out["bboxes"], dtype=np.float32)).reshape(-1, 4)
        img = torch.from_numpy(np.ascontiguousarray(out["image"])).permute(2, 0, 1).contiguous()
        before = (new_boxes[:, 2:] - new_boxes[:, :2]).prod(dim=1)
        return _finish(
            img,
            new_boxes,
            before,
            torch.as_tensor(labels, dtype=torch.long)[idx],
            torch.as_tensor(iscrowd, dtype=torch.bool)[idx],
            0.0,
            self.min_box_size,
        )


def _letterbox_v2(size: int, fill: int) -> Any:
    from torchvision import tv_tensors
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as F

    class Letterbox(v2.Transform):
        """Resize the longest side to ``size`` keeping aspect ratio, pad bottom/right to a square."""

        def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
            image = next(i for i in flat_inputs if isinstance(i, tv_tensors.Image))
            h, w = F.get_size(image)
            return {"new": letterbox_size(h, w, size)}

        def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
            if not isinstance(inpt, (tv_tensors.Image, tv_tensors.BoundingBoxes, tv_tensors.Mask)):
                return inpt
            nh, nw = params["new"]
            out = F.resize(inpt, [nh, nw], antialias=True)
            return F.pad(out, [0, 0, size - nw, size - nh], fill=fill)

    return Letterbox()


class TorchvisionTransform:
    """torchvision.transforms.v2 pipeline with ``tv_tensors.BoundingBoxes``: ``pre``, letterbox, ``post``.

    Same arguments and output as :class:`AlbumentationsTransform`.
    """

    def __init__(
        self,
        image_size: int,
        pre: Sequence[Any] = (),
        post: Sequence[Any] = (),
        min_visibility: float = 0.0,
        min_box_size: float = 1.0,
        fill: int = DEFAULT_FILL,
    ) -> None:
        from torchvision.transforms import v2

        self.min_visibility = min_visibility
        self.min_box_size = min_box_size
        self.pipeline = v2.Compose([*pre, _letterbox_v2(image_size, fill), *post])

    def __call__(
        self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, iscrowd: np.ndarray
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        from torchvision import tv_tensors

        h, w = image.shape[:2]
        img = tv_tensors.Image(
            torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)
        )
        raw = torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4)
        # The same boxes twice, through the same random parameters: clamped to the canvas after
        # every step (what survives) and never clamped (the full box), for the visible fraction.
        clamped = tv_tensors.BoundingBoxes(
            raw, format="XYXY", canvas_size=(h, w), clamping_mode="hard"
        )
        full = tv_tensors.BoundingBoxes(raw, format="XYXY", canvas_size=(h, w), clamping_mode=None)
        out_img, out_boxes, out_full = self.pipeline(img, clamped, full)
        out_full = out_full.as_subclass(Tensor).float()
        wh = (out_full[:, 2:] - out_full[:, :2]).clamp(min=0)
        return _finish(
            out_img.as_subclass(Tensor).contiguous(),
            out_boxes.as_subclass(Tensor).float(),
            wh.prod(dim=1),
            torch.as_tensor(labels, dtype=torch.long),
            torch.as_tensor(iscrowd, dtype=torch.bool),
            self.min_visibility,
            self.min_box_size,
        )


def _preset_albumentations(preset: str, image_size: int, fill: int) -> list[Any]:
    import albumentations as A
    import cv2

    post: list[Any] = []
    if preset in ("light", "default", "strong"):
        post.append(A.HorizontalFlip(p=0.5))
    if preset in ("default", "strong"):
        post += [
            A.Affine(
                scale=(0.75, 1.25),
                keep_ratio=True,
                border_mode=cv2.BORDER_CONSTANT,
                fill=fill,
                p=0.5,
            ),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
        ]
    if preset == "strong":
        post.append(A.RandomResizedCrop(size=(image_size, image_size), scale=(0.25, 1.0), p=0.5))
    return post


def _preset_torchvision(preset: str, image_size: int, fill: int) -> list[Any]:
    from torchvision.transforms import v2

    post: list[Any] = []
    if preset in ("light", "default", "strong"):
        post.append(v2.RandomHorizontalFlip(p=0.5))
    if preset in ("default", "strong"):
        post += [
            v2.RandomApply([v2.RandomAffine(degrees=0, scale=(0.75, 1.25), fill=fill)], p=0.5),
            v2.RandomApply([v2.ColorJitter(0.2, 0.2, 0.2, 0.02)], p=0.5),
        ]
    if preset == "strong":
        post.append(
            v2.RandomApply(
                [v2.RandomResizedCrop((image_size, image_size), scale=(0.25, 1.0))], p=0.5
            )
        )
    return post


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


def build_transform(
    image_size: int,
    preset: str = "default",
    backend: str = "albumentations",
    train: bool = True,
    custom: Any = None,
    min_visibility: float = 0.0,
    min_box_size: float = 1.0,
    fill: int = DEFAULT_FILL,
) -> AlbumentationsTransform | TorchvisionTransform:
    """The transform of one split.

    Args:
        image_size: square output side.
        preset: ``"none"``, ``"light"`` (flip), ``"default"`` (flip, scale jitter, colour) or
            ``"strong"`` (adds random crops); only used when ``train``. Default ``"default"``.
        backend: ``"albumentations"`` (default) or ``"torchvision"`` (transforms.v2).
        train: augment (True) or only letterbox (False). Default True.
        custom: your own pipeline of the backend's library, run on the original image before the
            letterbox and replacing the preset. Default None.
        min_visibility: drop boxes less visible than this fraction after augmentation. Default 0.
        min_box_size: drop boxes with a side shorter than this (output pixels). Default 1.0.
        fill: padding value. Default 114.
    """
    check_choice("augmentation_preset", preset, PRESETS)
    check_choice("transform_backend", backend, BACKENDS)
    pre = _as_list(custom)
    if custom is not None or not train:
        post = []
    elif backend == "albumentations":
        post = _preset_albumentations(preset, image_size, fill)
    else:
        post = _preset_torchvision(preset, image_size, fill)
    cls = AlbumentationsTransform if backend == "albumentations" else TorchvisionTransform
    return cls(
        image_size,
        pre=pre,
        post=post,
        min_visibility=min_visibility,
        min_box_size=min_box_size,
        fill=fill,
    )
