"""DetectionDataModule: COCO-format folders to train/val/test loaders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from autotimm_core.data import BaseDataModule
from autotimm_detection.data.coco import (
    CocoDetection,
    collate_detection,
    load_coco,
    read_categories,
)
from autotimm_detection.data.transforms import (
    DEFAULT_FILL,
    BoxTransform,
    build_detection_transform,
)

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


class DetectionDataModule(BaseDataModule):
    """COCO-format detection data with box-aware augmentation and letterbox resizing.

    Loaders yield ``(images, targets)``: uint8 ``(B, 3, S, S)`` images (normalized on the device
    by ``on_after_batch_transfer``, see :class:`~autotimm_core.data.BaseDataModule`) and one
    target dict per image. When a fit starts, the model's ``data_config`` and this module's are
    merged (``autotimm_core.DataContract``) and the transforms follow the result.

    Args:
        data_dir: root of a COCO layout: ``annotations/instances_train2017.json`` with
            ``train2017/`` (likewise val/test), or the same with ``train/``, ``val/``, ``test/`` and
            ``instances_train.json``...
        batch_size: images per batch. Default 16.
        train_ann: training annotation file, overriding the found layout. Default None.
        val_ann: validation annotation file, overriding the found layout. Default None.
        test_ann: test annotation file, overriding the found layout. Default None.
        train_images: training image folder, overriding the found layout. Default None.
        val_images: validation image folder, overriding the found layout. Default None.
        test_images: test image folder, overriding the found layout. Default None.
        min_box_size: boxes with a side shorter than this (pixels) are dropped. Default 1.0.
        min_visibility: after augmentation, boxes with less than this fraction still in the image
            are dropped. Default 0.25.
        train_transforms: your own augmentation pipeline for the chosen backend (run before the
            letterbox, replacing the preset); not stored in checkpoints' hyperparameters.
            Default None.
        fill: letterbox padding grey level. Default 114.
        **kwargs: the arguments every data module takes (see
            :class:`~autotimm_core.data.BaseDataModule`): ``image_size`` (the square network
            input side; images are letterboxed, aspect ratio kept, padded bottom/right; default
            None: the model's, ``ObjectDetector(image_size=...)``, else 640), ``num_workers``
            (4, capped at the CPUs), ``augmentation_preset`` (``"none"``, ``"light"``: flip,
            ``"default"``: flip, scale jitter, colour, ``"strong"``: adds random crops),
            ``transform_backend`` (``"torchvision"`` or ``"albumentations"``, the
            ``autotimm-detection[albumentations]`` extra, for training; evaluation always uses
            the torchvision letterbox that ``ObjectDetector.predict`` uses), ``mean``, ``std``,
            ``interpolation`` (default None: the model's), ``normalize_on_device`` (True),
            ``pin_memory``, ``persistent_workers``.

    Attributes:
        num_classes: number of categories in the training annotations.
        class_names: category names, sorted by category id.
        category_ids: the data set's category ids; label ``i`` is category ``category_ids[i]``.
        datasets: the splits set up so far, by name.
    """

    resize_mode = "letterbox"
    default_image_size = 640
    distribution = "autotimm-detection"

    def __init__(
        self,
        data_dir: str | Path = ".",
        batch_size: int = 16,
        train_ann: str | Path | None = None,
        val_ann: str | Path | None = None,
        test_ann: str | Path | None = None,
        train_images: str | Path | None = None,
        val_images: str | Path | None = None,
        test_images: str | Path | None = None,
        min_box_size: float = 1.0,
        min_visibility: float = 0.25,
        train_transforms: Any = None,
        fill: int = DEFAULT_FILL,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        if train_transforms is not None:
            # A pipeline object cannot go into a checkpoint (loaded with weights_only=True):
            # it stays on this instance only.
            self.hparams["train_transforms"] = None
        self.data_dir = Path(data_dir)
        self.min_box_size = min_box_size
        self.min_visibility = min_visibility
        self.train_transforms = train_transforms
        self.fill = fill
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
        cat_to_label = {c: i for i, c in enumerate(self.category_ids)}
        self.datasets[split] = CocoDetection(
            ann, self._transform(split), cat_to_label, self.image_size
        )
        return self.datasets[split]

    def _transform(self, split: str) -> BoxTransform:
        train = split == "train"
        return build_detection_transform(
            self.data_config,
            preset=self.augmentation_preset,
            backend=self.transform_backend,
            train=train,
            custom=self.train_transforms if train else None,
            min_visibility=self.min_visibility if train else 0.0,
            min_box_size=self.min_box_size,
            fill=self.fill,
            normalize=not self.normalize_on_device,
        )

    def on_data_config_change(self) -> None:
        """The splits already read get transforms for the new config (the model's, merged)."""
        for split, dataset in self.datasets.items():
            dataset.transform = self._transform(split)
            dataset.image_size = self.image_size

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self._dataset("train")
        if stage in (None, "fit", "validate") and self.paths["val"] is not None:
            self._dataset("val")
        if stage in (None, "test"):
            self._dataset("test")

    def _loader(self, split: str, train: bool) -> DataLoader:
        return self.make_loader(self._dataset(split), train, collate_fn=collate_detection)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader | list:
        # No validation split: an empty list makes Lightning skip validation.
        return self._loader("val", train=False) if self.paths["val"] is not None else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        split = "test" if self.paths["test"] is not None else "val"
        return self._loader(split, train=False)
