"""DetectionDataModule: COCO-format folders to train/val/test loaders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch.utils.data import DataLoader
from torchmetrics.detection import MeanAveragePrecision

from autotimm_core.distributed import unpadded_eval_sampler
from autotimm_core.validation import check_choice
from autotimm_detection.data.coco import (
    CocoDetection,
    collate_detection,
    load_coco,
    read_categories,
)
from autotimm_detection.data.transforms import BACKENDS, DEFAULT_FILL, PRESETS, build_transform
from autotimm_detection.metrics import COCOMeanAveragePrecision

SPLITS = ("train", "val", "test")


def find_split(data_dir: Path, split: str) -> tuple[Path | None, Path | None, list[Path]]:
    """Annotation file and image folder of a split in a COCO layout, and the paths tried.

    Looks for ``annotations/instances_{split}2017.json`` with ``{split}2017/`` first, then
    ``annotations/instances_{split}.json`` with ``{split}/``.
    """
    tried = []
    for suffix in ("2017", ""):
        ann = data_dir / "annotations" / f"instances_{split}{suffix}.json"
        tried.append(ann)
        if ann.is_file():
            return ann, data_dir / f"{split}{suffix}", tried
    return None, None, tried


class DetectionDataModule(pl.LightningDataModule):
    """COCO-format detection data with box-aware augmentation and letterbox resizing.

    Args:
        data_dir: root of a COCO layout: ``annotations/instances_train2017.json`` with
            ``train2017/`` (likewise val/test), or the same with ``train/``, ``val/``, ``test/`` and
            ``instances_train.json``...
        image_size: square network input side; images are letterboxed (aspect ratio kept, padded
            bottom/right). Default 640.
        batch_size: images per batch. Default 16.
        num_workers: loader processes. Default 4.
        augmentation_preset: ``"none"``, ``"light"`` (flip), ``"default"`` (flip, scale jitter,
            colour) or ``"strong"`` (adds random crops). Default ``"default"``.
        train_ann: training annotation file, overriding the found layout. Default None.
        val_ann: validation annotation file, overriding the found layout. Default None.
        test_ann: test annotation file, overriding the found layout. Default None.
        train_images: training image folder, overriding the found layout. Default None.
        val_images: validation image folder, overriding the found layout. Default None.
        test_images: test image folder, overriding the found layout. Default None.
        min_box_size: boxes with a side shorter than this (pixels) are dropped. Default 1.0.
        min_visibility: after augmentation, boxes with less than this fraction still in the image
            are dropped. Default 0.25.
        transform_backend: ``"albumentations"`` (default) or ``"torchvision"`` (transforms.v2).
        train_transforms: your own augmentation pipeline for the chosen backend (run before the
            letterbox, replacing the preset). Default None.
        fill: letterbox padding grey level. Default 114.
        pin_memory: pin batches in page-locked memory. Default: True when CUDA is available.
        persistent_workers: keep loader workers between epochs (when ``num_workers > 0``).
            Default True.

    Attributes:
        num_classes: number of categories in the training annotations (set by ``setup``).
        class_names: category names, sorted by category id.
        category_ids: the data set's category ids; label ``i`` is category ``category_ids[i]``.
    """

    def __init__(
        self,
        data_dir: str | Path = ".",
        image_size: int = 640,
        batch_size: int = 16,
        num_workers: int = 4,
        augmentation_preset: str = "default",
        train_ann: str | Path | None = None,
        val_ann: str | Path | None = None,
        test_ann: str | Path | None = None,
        train_images: str | Path | None = None,
        val_images: str | Path | None = None,
        test_images: str | Path | None = None,
        min_box_size: float = 1.0,
        min_visibility: float = 0.25,
        transform_backend: str = "albumentations",
        train_transforms: Any = None,
        fill: int = DEFAULT_FILL,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
    ) -> None:
        super().__init__()
        check_choice("augmentation_preset", augmentation_preset, PRESETS)
        check_choice("transform_backend", transform_backend, BACKENDS)
        if not (isinstance(image_size, int) and image_size > 0):
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        self.data_dir = Path(data_dir)
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augmentation_preset = augmentation_preset
        self.min_box_size = min_box_size
        self.min_visibility = min_visibility
        self.transform_backend = transform_backend
        self.train_transforms = train_transforms
        self.fill = fill
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.persistent_workers = persistent_workers
        explicit = {
            "train": (train_ann, train_images),
            "val": (val_ann, val_images),
            "test": (test_ann, test_images),
        }
        self.paths: dict[str, tuple[Path, Path] | None] = {}
        self._tried: dict[str, list[Path]] = {}
        for split, (ann, images) in explicit.items():
            found_ann, found_images, tried = find_split(self.data_dir, split)
            ann = Path(ann) if ann is not None else found_ann
            images = Path(images) if images is not None else found_images
            if ann is not None and images is None:
                # An explicit annotation file without a folder: images next to it.
                images = ann.parent
            self.paths[split] = (ann, images) if ann is not None else None
            self._tried[split] = tried
        if self.paths["train"] is None:
            raise FileNotFoundError(
                f"no training annotations found under {self.data_dir}: tried "
                + ", ".join(str(p) for p in self._tried["train"])
                + " (or pass train_ann=... and train_images=...)"
            )
        self._categories: list[dict[str, Any]] | None = None
        self.datasets: dict[str, CocoDetection] = {}

    # ----------------------------------------------------------------- classes
    @property
    def categories(self) -> list[dict[str, Any]]:
        """The training annotations' categories (``id``, ``name``), sorted by id."""
        if self._categories is None:
            self._categories = read_categories(self.paths["train"][0])
        return self._categories

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    @property
    def class_names(self) -> list[str]:
        return [c["name"] for c in self.categories]

    @property
    def category_ids(self) -> list[int]:
        return [c["id"] for c in self.categories]

    # ----------------------------------------------------------------- datasets
    def _dataset(self, split: str) -> CocoDetection:
        if split in self.datasets:
            return self.datasets[split]
        paths = self.paths[split]
        if paths is None:
            raise FileNotFoundError(
                f"no {split} annotations found under {self.data_dir}: tried "
                + ", ".join(str(p) for p in self._tried[split])
                + f" (or pass {split}_ann=... and {split}_images=...)"
            )
        ann = load_coco(
            paths[0], paths[1], categories=self.categories, min_box_size=self.min_box_size
        )
        train = split == "train"
        transform = build_transform(
            self.image_size,
            preset=self.augmentation_preset,
            backend=self.transform_backend,
            train=train,
            custom=self.train_transforms if train else None,
            min_visibility=self.min_visibility if train else 0.0,
            min_box_size=self.min_box_size,
            fill=self.fill,
        )
        cat_to_label = {c: i for i, c in enumerate(self.category_ids)}
        self.datasets[split] = CocoDetection(ann, transform, cat_to_label, self.image_size)
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self._dataset("train")
        if stage in (None, "fit", "validate") and self.paths["val"] is not None:
            self._dataset("val")
        if stage in (None, "test"):
            self._dataset("test")

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self._dataset(split)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=None if shuffle else self._eval_sampler(dataset),
            num_workers=self.num_workers,
            collate_fn=collate_detection,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            drop_last=False,
        )

    def _eval_sampler(self, dataset: CocoDetection) -> Any:
        """Each evaluation image on exactly one DDP rank, where the model's mAP metrics can sync
        ranks holding different numbers of images (:class:`COCOMeanAveragePrecision` can)."""
        trainer = self.trainer
        sampler = unpadded_eval_sampler(trainer, dataset)
        if sampler is None:
            return None
        module = trainer.lightning_module
        unsafe = sorted(
            {
                type(m).__name__
                for m in (module.modules() if module is not None else ())
                if isinstance(m, MeanAveragePrecision)
                and not isinstance(m, COCOMeanAveragePrecision)
            }
        )
        if unsafe:
            rank_zero_warn(
                f"{', '.join(unsafe)} cannot sync DDP ranks that evaluated different numbers of "
                "images, so evaluation keeps Lightning's DistributedSampler, which repeats images "
                f"when a split does not divide by {trainer.world_size} processes (mAP then counts "
                "them twice). Subclass autotimm_detection.COCOMeanAveragePrecision instead to "
                "evaluate every image exactly once."
            )
            return None
        return sampler

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        # No validation split: an empty list makes Lightning skip validation.
        return self._loader("val", shuffle=False) if self.paths["val"] is not None else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        split = "test" if self.paths["test"] is not None else "val"
        return self._loader(split, shuffle=False)
