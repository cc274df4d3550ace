"""SegmentationDataset: (image, mask) pairs read, checked and transformed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from autotimm_core.data import read_image_rgb
from autotimm_segmentation.data.masks import check_mask, rasterise_coco, read_mask


class CocoMasks:
    """Semantic masks of a COCO instance annotation file (pycocotools), rasterised on demand.

    Args:
        ann_file: the instances JSON.
        ignore_index: value of crowd regions. Default 255.

    Attributes:
        categories: ``{"id", "name"}`` per category, sorted by id; category ``i`` of this list
            is class ``i + 1`` (class 0 is ``"background"``).
    """

    def __init__(self, ann_file: Path, ignore_index: int = 255) -> None:
        import contextlib
        import io

        from pycocotools.coco import COCO

        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            self.coco = COCO(str(ann_file))
        self.ann_file = ann_file
        self.ignore_index = ignore_index
        self.categories = sorted(
            ({"id": int(c["id"]), "name": str(c["name"])} for c in self.coco.cats.values()),
            key=lambda c: c["id"],
        )
        self.cat_to_label = {c["id"]: i + 1 for i, c in enumerate(self.categories)}

    @property
    def class_names(self) -> list[str]:
        return ["background", *(c["name"] for c in self.categories)]

    def pairs(self, image_dir: Path) -> list[tuple[Path, int]]:
        """``(image file, image id)`` for every image of the file (missing files named)."""
        out = []
        for image_id in sorted(self.coco.imgs):
            path = image_dir / self.coco.imgs[image_id]["file_name"]
            if not path.is_file():
                raise FileNotFoundError(f"{self.ann_file} lists image {path}, which is missing")
            out.append((path, image_id))
        return out

    def mask(self, image_id: int) -> Tensor:
        return rasterise_coco(self.coco, image_id, self.cat_to_label, self.ignore_index)


class SegmentationDataset(Dataset):
    """Images and their class maps, checked and passed through ``transform``.

    Args:
        samples: ``(image file, mask)`` pairs: the mask a file, or a COCO image id of ``coco``.
        num_classes: masks may hold ``0..num_classes-1`` and ``ignore_index``.
        transform: ``transform(image, mask) -> (image, mask)`` (see
            :func:`~autotimm_segmentation.build_segmentation_transform`); None: as read.
        ignore_index: the value left out of loss and metrics. Default 255.
        coco: the :class:`CocoMasks` the ids refer to. Default None.

    Items are ``(image, mask)``: a uint8 ``(3, S, S)`` image (or float with a normalizing
    transform) and a uint8 ``(S, S)`` class map.
    """

    def __init__(
        self,
        samples: Sequence[tuple[Path, Any]],
        num_classes: int,
        transform: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None,
        ignore_index: int = 255,
        coco: CocoMasks | None = None,
    ) -> None:
        self.samples = list(samples)
        self.num_classes = num_classes
        self.transform = transform
        self.ignore_index = ignore_index
        self.coco = coco

    def __len__(self) -> int:
        return len(self.samples)

    def read(self, index: int) -> tuple[Tensor, Tensor]:
        """The image and mask of sample ``index`` as stored (checked, not transformed)."""
        image_path, source = self.samples[index]
        image = read_image_rgb(image_path)
        if self.coco is not None and not isinstance(source, (str, Path)):
            mask, where = self.coco.mask(int(source)), f"{self.coco.ann_file} (image {image_path})"
        else:
            mask, where = read_mask(source), source
        check_mask(
            mask, self.num_classes, self.ignore_index, where, tuple(image.shape[-2:]), image_path
        )
        return image, mask

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, mask = self.read(index)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask.to(torch.uint8)
