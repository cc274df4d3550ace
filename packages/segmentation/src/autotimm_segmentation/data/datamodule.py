"""SegmentationDataModule: image/mask folders, Pascal VOC, CSV or COCO data to loaders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from autotimm_core.data import BaseDataModule
from autotimm_core.validation import check_choice
from autotimm_segmentation.data.dataset import CocoMasks, SegmentationDataset
from autotimm_segmentation.data.layouts import (
    LAYOUTS,
    coco_files,
    csv_pairs,
    find_coco_split,
    find_folder_split,
    folder_dirs,
    folder_pairs,
    voc_pairs,
    voc_split_file,
)
from autotimm_segmentation.data.masks import VOC_CLASSES, read_mask
from autotimm_segmentation.data.transforms import (
    SegmentationTransform,
    build_segmentation_transform,
)

SPLITS = ("train", "val", "test")


class SegmentationDataModule(BaseDataModule):
    """Semantic segmentation data with mask-aware augmentation and letterbox resizing.

    Loaders yield ``(images, masks)``: uint8 ``(B, 3, S, S)`` images (normalized on the device by
    ``on_after_batch_transfer``, see :class:`~autotimm_core.data.BaseDataModule`) and uint8
    ``(B, S, S)`` class maps where padding and exposed pixels are ``ignore_index``. When a fit
    starts, the model's ``data_config`` and this module's are merged
    (``autotimm_core.DataContract``) and the transforms follow the result.

    Args:
        data_dir: root of the data set. The layouts:

            - ``"folder"``: ``train/images/NAME.jpg`` with ``train/masks/NAME.png`` (likewise
              ``val/``, ``test/``), or ``images/train/`` with ``masks/train/``; masks are palette
              or greyscale PNGs of class indices with the image's file name stem.
            - ``"voc"`` (Pascal VOC): ``JPEGImages/ID.jpg``, ``SegmentationClass/ID.png``
              (palette PNGs), ``ImageSets/Segmentation/{train,val,test}.txt``; classes default
              to VOC's 21 (255 marks object borders, ignored).
            - ``"csv"``: ``{split}.csv`` with columns ``image,mask`` (paths relative to
              ``image_dir``).
            - ``"coco"``: COCO instance annotations rasterised to semantic masks (pycocotools):
              ``annotations/instances_{split}.json`` with ``{split}/`` (or ``{split}2017``), or
              ``{split}/annotations.json`` with ``{split}/images/``; class 0 is
              ``"background"``, category ``k`` (by sorted id) is class ``k + 1``, crowd regions
              are ``ignore_index``.
        batch_size: images per batch. Default 8.
        layout: ``"auto"``, ``"folder"``, ``"voc"``, ``"csv"`` or ``"coco"``. ``"auto"`` takes
            CSV when ``train_csv`` is given, then VOC (``ImageSets/Segmentation/train.txt``),
            mask folders, COCO (a folder holding both PNG masks and a COCO file is read as
            masks), ``train.csv``. Default ``"auto"``.
        class_names: class names by index. Default None: ``classes.txt`` in ``data_dir`` (one
            name per line) if present, else the layout's (VOC's, COCO's categories), else
            ``"0".."n-1"`` with ``n`` from the training masks' largest value.
        ignore_index: mask value left out of loss and metrics, in [0, 255] (the model's must
            be the same). Default 255.
        train_csv: training CSV (layout ``"csv"``). Default None: ``data_dir/train.csv``.
        val_csv: validation CSV. Default None: ``data_dir/val.csv`` if it exists.
        test_csv: test CSV. Default None: ``data_dir/test.csv`` if it exists.
        image_dir: the folder CSV paths are relative to. Default None: ``data_dir``.
        **kwargs: the arguments every data module takes (see
            :class:`~autotimm_core.data.BaseDataModule`): ``image_size`` (the square input side;
            images are letterboxed; default None: the model's,
            ``SemanticSegmentor(image_size=...)``, else 512), ``num_workers`` (4, capped at the
            CPUs), ``augmentation_preset`` (``"none"``, ``"light"``: flip, ``"default"``: random
            scale 0.5-2x and crop, flip, colour, ``"strong"``: scale 0.25-2.5x, flip, colour,
            rotation), ``transform_backend`` (``"torchvision"`` or ``"albumentations"``, the
            ``autotimm-segmentation[albumentations]`` extra, for training; evaluation always
            uses the torchvision letterbox that ``SemanticSegmentor.predict`` uses), ``mean``,
            ``std``, ``interpolation`` (of images; masks are always nearest-neighbour),
            ``normalize_on_device`` (True), ``pin_memory``, ``persistent_workers``.

    Attributes:
        layout: the layout read (``"auto"`` resolved).
        num_classes: number of classes.
        class_names: class names by index.
        datasets: the splits set up so far, by name.

    Raises:
        FileNotFoundError: no training data found (naming the paths tried), an image without
            its mask.
        ValueError: an unknown layout, arguments of another layout, a bad ``ignore_index``.
    """

    resize_mode = "letterbox"
    default_image_size = 512
    distribution = "autotimm-segmentation"

    def __init__(
        self,
        data_dir: str | Path = ".",
        batch_size: int = 8,
        layout: str = "auto",
        class_names: Sequence[str] | None = None,
        ignore_index: int = 255,
        train_csv: str | Path | None = None,
        val_csv: str | Path | None = None,
        test_csv: str | Path | None = None,
        image_dir: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        check_choice("layout", layout, LAYOUTS)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise ValueError(f"ignore_index must be an int in [0, 255], got {ignore_index!r}")
        if not 0 <= ignore_index <= 255:
            raise ValueError(f"ignore_index must be in [0, 255] (8-bit masks), got {ignore_index}")
        self.data_dir = Path(data_dir)
        self.ignore_index = ignore_index
        csv_args = {"train_csv": train_csv, "val_csv": val_csv, "test_csv": test_csv}
        if layout == "auto":
            layout = self._detect_layout(csv_args)
        given = [k for k, v in csv_args.items() if v is not None]
        if given and layout != "csv":
            raise ValueError(f"{', '.join(given)} are for layout='csv', not '{layout}'")
        self.layout = layout
        self._image_dir = Path(image_dir) if image_dir is not None else self.data_dir
        self._csv = {
            s: Path(csv_args[f"{s}_csv"])
            if csv_args[f"{s}_csv"] is not None
            else self.data_dir / f"{s}.csv"
            for s in SPLITS
        }
        self._coco: dict[str, CocoMasks] = {}
        self._samples: dict[str, list[tuple[Path, Any]]] = {}
        if not self.has_split("train"):
            raise FileNotFoundError(
                f"no training data for layout='{layout}' under {self.data_dir}: tried "
                + ", ".join(str(p) for p in self._tried("train"))
            )
        self._class_names = [str(c) for c in class_names] if class_names is not None else None
        self.datasets: dict[str, SegmentationDataset] = {}

    # ----------------------------------------------------------------- layouts
    def _detect_layout(self, csv_args: dict[str, Any]) -> str:
        d = self.data_dir
        if any(v is not None for v in csv_args.values()):
            return "csv"
        if voc_split_file(d, "train").is_file():
            return "voc"
        # PNG masks before a COCO file: a folder holding both is read from its masks.
        if find_folder_split(d, "train") is not None:
            return "folder"
        if find_coco_split(d, "train") is not None:
            return "coco"
        if (d / "train.csv").is_file():
            return "csv"
        tried = [voc_split_file(d, "train")]
        tried += [m for pair in folder_dirs(d, "train") for m in pair]
        tried += [a for a, _ in coco_files(d, "train")] + [d / "train.csv"]
        raise FileNotFoundError(
            f"no segmentation data found under {d}: tried "
            + ", ".join(str(p) for p in tried)
            + " (or pass train_csv=... or layout=...)"
        )

    def _tried(self, split: str) -> list[Path]:
        d = self.data_dir
        return {
            "folder": lambda: [m for pair in folder_dirs(d, split) for m in pair],
            "voc": lambda: [voc_split_file(d, split)],
            "csv": lambda: [self._csv[split]],
            "coco": lambda: [a for a, _ in coco_files(d, split)],
        }[self.layout]()

    def has_split(self, split: str) -> bool:
        """Whether the data set has ``split`` (``"train"``, ``"val"`` or ``"test"``)."""
        d = self.data_dir
        if self.layout == "folder":
            return find_folder_split(d, split) is not None
        if self.layout == "voc":
            return voc_split_file(d, split).is_file()
        if self.layout == "csv":
            return self._csv[split].is_file()
        return find_coco_split(d, split) is not None

    def samples(self, split: str) -> list[tuple[Path, Any]]:
        """The split's ``(image file, mask source)`` pairs (read once)."""
        if split in self._samples:
            return self._samples[split]
        if not self.has_split(split):
            raise FileNotFoundError(
                f"no {split} split under {self.data_dir} (layout='{self.layout}'): tried "
                + ", ".join(str(p) for p in self._tried(split))
            )
        d = self.data_dir
        if self.layout == "folder":
            pairs: list[tuple[Path, Any]] = list(folder_pairs(*find_folder_split(d, split)))
        elif self.layout == "voc":
            pairs = list(voc_pairs(d, split))
        elif self.layout == "csv":
            pairs = list(csv_pairs(self._csv[split], self._image_dir))
        else:
            pairs = list(self._coco_masks(split).pairs(find_coco_split(d, split)[1]))
        self._samples[split] = pairs
        return pairs

    def _coco_masks(self, split: str) -> CocoMasks:
        if split not in self._coco:
            ann, _ = find_coco_split(self.data_dir, split)
            self._coco[split] = CocoMasks(ann, self.ignore_index)
        return self._coco[split]

    # ----------------------------------------------------------------- classes
    @property
    def class_names(self) -> list[str]:
        """Class names by index (see the ``class_names`` argument for where they come from)."""
        if self._class_names is None:
            self._class_names = self._find_class_names()
            # Lightning logs this module's hyperparameters with the model's, which takes these
            # names (DataContract), and stops on a key they hold with different values: both
            # hold the names (a dict to save_hyperparameters, Lightning's public way to change
            # saved values, updates the initial copy that is logged).
            self.save_hyperparameters({**self.hparams, "class_names": list(self._class_names)})
        return self._class_names

    def _find_class_names(self) -> list[str]:
        listed = self.data_dir / "classes.txt"
        if listed.is_file():
            return [n.strip() for n in listed.read_text().splitlines() if n.strip()]
        if self.layout == "voc":
            return list(VOC_CLASSES)
        if self.layout == "coco":
            return self._coco_masks("train").class_names
        # Nothing names the classes: count them from the training masks.
        top = -1
        for _, mask_file in self.samples("train"):
            values = [v for v in read_mask(mask_file).unique().tolist() if v != self.ignore_index]
            top = max([top, *values])
        return [str(i) for i in range(top + 1)]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # ----------------------------------------------------------------- datasets
    def _transform(self, split: str) -> SegmentationTransform:
        return build_segmentation_transform(
            self.data_config,
            preset=self.augmentation_preset,
            backend=self.transform_backend,
            train=split == "train",
            ignore_index=self.ignore_index,
            normalize=not self.normalize_on_device,
        )

    def _dataset(self, split: str) -> SegmentationDataset:
        if split not in self.datasets:
            coco = self._coco_masks(split) if self.layout == "coco" else None
            self.datasets[split] = SegmentationDataset(
                self.samples(split),
                self.num_classes,
                self._transform(split),
                self.ignore_index,
                coco=coco,
            )
        return self.datasets[split]

    def on_data_config_change(self) -> None:
        """The splits already read get transforms for the new config (the model's, merged)."""
        for split, dataset in self.datasets.items():
            dataset.transform = self._transform(split)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self._dataset("train")
        if stage in (None, "fit", "validate") and self.has_split("val"):
            self._dataset("val")
        if stage in (None, "test"):
            self._dataset("test")

    def train_dataloader(self) -> DataLoader:
        return self.make_loader(self._dataset("train"), train=True)

    def val_dataloader(self) -> DataLoader | list:
        # No validation split: an empty list makes Lightning skip validation.
        return self.make_loader(self._dataset("val"), train=False) if self.has_split("val") else []

    def test_dataloader(self) -> DataLoader:
        return self.make_loader(self._dataset("test"), train=False)

    def predict_dataloader(self) -> DataLoader:
        split = "test" if self.has_split("test") else "val"
        return self.make_loader(self._dataset(split), train=False)
