"""DetectionDataModule: COCO, YOLO, Pascal VOC or CSV detection data to train/val/test loaders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from autotimm_core.data import BaseDataModule
from autotimm_core.validation import check_choice
from autotimm_detection.data.builtin import builtin_dir, resolve_dataset_name
from autotimm_detection.data.coco import (
    CocoAnnotations,
    CocoDetection,
    collate_detection,
    load_coco,
    read_categories,
)
from autotimm_detection.data.formats import (
    FORMATS,
    find_yolo_yaml,
    load_csv,
    load_voc,
    load_yolo,
    read_yolo_yaml,
    voc_split_file,
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
    """Detection data (COCO, YOLO, Pascal VOC or CSV) with box-aware augmentation and letterbox
    resizing.

    Loaders yield ``(images, targets)``: uint8 ``(B, 3, S, S)`` images (normalized on the device
    by ``on_after_batch_transfer``, see :class:`~autotimm_core.data.BaseDataModule`) and one
    target dict per image. When a fit starts, the model's ``data_config`` and this module's are
    merged (``autotimm_core.DataContract``) and the transforms follow the result.

    Every layout is read into the same records (see ``autotimm_detection.data.formats``), so
    the same images give the same boxes and the same mAP whichever layout holds them.

    Args:
        data_dir: root of the data set (or, for YOLO, its ``data.yaml``). The layouts:

            - ``"coco"``: ``annotations/instances_train2017.json`` with ``train2017/`` (likewise
              val/test), or the same with ``train/``, ``val/``, ``test/`` and
              ``instances_train.json``...
            - ``"yolo"`` (Ultralytics): ``data.yaml`` (``path``, ``train``, ``val``, ``test``,
              ``names`` as a list or ``{index: name}``) naming image folders such as
              ``images/train``, with ``labels/train/NAME.txt`` of normalised
              ``class cx cy w h`` lines; category ids are the class indices.
            - ``"voc"``: ``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/{split}.txt``;
              ``difficult`` objects are ignored in training and evaluation (as crowd boxes).
            - ``"csv"``: ``{split}.csv`` with columns ``image_path,x_min,y_min,x_max,y_max,label``
              (pixels, one row per box; a row with empty box columns is an image without
              objects), image paths relative to ``data_dir``.

            For VOC and CSV the training split's class names, sorted, get ids ``0..n-1``.
            With ``dataset_name``, the folder the built-in set is generated into. Default None:
            the current folder, or for a built-in set ``$AUTOTIMM_DATA_DIR``, else
            ``$XDG_CACHE_HOME/autotimm``, else ``~/.cache/autotimm``.
        dataset_name: a built-in offline data set instead of your own files:
            ``"photo_objects"`` (cats, coffee cups and astronauts cropped from scikit-image's
            sample photos and pasted onto other photos, 128 px; 480 training, 96 validation and
            96 test images; the ``autotimm-detection[builtin]`` extra). It is generated into
            ``data_dir`` when this module is created the first time (a few seconds, seeded: the
            same on every machine) and read as a COCO layout, like your own data. Default None.
        batch_size: images per batch. Default 16.
        train_ann: training annotation file, overriding the found layout. Default None.
        val_ann: validation annotation file, overriding the found layout. Default None.
        test_ann: test annotation file, overriding the found layout. Default None.
        train_images: training image folder, overriding the found layout. Default None.
        val_images: validation image folder, overriding the found layout. Default None.
        test_images: test image folder, overriding the found layout. Default None.
        min_box_size: boxes with a side shorter than this (pixels) are dropped from training
            targets; evaluation (``val/map``) keeps every annotation as the file gives it, as
            pycocotools does. Default 1.0.
        min_visibility: after augmentation, boxes with less than this fraction still in the image
            are dropped. Default 0.25.
        train_transforms: your own augmentation pipeline for the chosen backend (run before the
            letterbox, replacing the preset); not stored in checkpoints' hyperparameters.
            Default None.
        fill: letterbox padding grey level. Default 114.
        format: ``"auto"``, ``"coco"``, ``"yolo"``, ``"voc"`` or ``"csv"``. ``"auto"`` takes CSV
            when ``train_csv`` is given, COCO when ``train_ann`` is given or a COCO layout is
            found, then YOLO (``data.yaml`` or ``dataset.yaml``), VOC
            (``ImageSets/Main/train.txt``), CSV (``train.csv``). Default ``"auto"``.
        train_csv: training CSV file (format ``"csv"``). Default None: ``data_dir/train.csv``.
        val_csv: validation CSV file. Default None: ``data_dir/val.csv`` if it exists.
        test_csv: test CSV file. Default None: ``data_dir/test.csv`` if it exists.
        image_dir: the folder the CSV files' ``image_path`` is relative to. Default None:
            ``data_dir``.
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
        format: the layout read (``"auto"`` resolved).
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
        data_dir: str | Path | None = None,
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
        format: str = "auto",  # the name Ultralytics and upstream AutoTimm use
        train_csv: str | Path | None = None,
        val_csv: str | Path | None = None,
        test_csv: str | Path | None = None,
        image_dir: str | Path | None = None,
        dataset_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        if train_transforms is not None:
            # A pipeline object cannot go into a checkpoint (loaded with weights_only=True):
            # it stays on this instance only.
            self.hparams["train_transforms"] = None
        self.dataset_name = dataset_name
        if dataset_name is not None:
            key = resolve_dataset_name(dataset_name)
            own = {"train_ann": train_ann, "val_ann": val_ann, "test_ann": test_ann}
            own |= {"train_images": train_images, "val_images": val_images}
            own |= {"test_images": test_images, "train_csv": train_csv, "val_csv": val_csv}
            own |= {"test_csv": test_csv, "image_dir": image_dir}
            given = [k for k, v in own.items() if v is not None]
            given += [] if format in ("auto", "coco") else ["format"]
            if given:
                raise ValueError(
                    f"dataset_name={dataset_name!r} is a built-in data set: leave out "
                    f"{', '.join(given)} (they read your own files), or leave out dataset_name"
                )
            # Generated once (atomically) and then read as COCO, the path your own data takes.
            data_dir = builtin_dir(key, data_dir)
        self.data_dir = Path("." if data_dir is None else data_dir)
        self.min_box_size = min_box_size
        self.min_visibility = min_visibility
        self.train_transforms = train_transforms
        self.fill = fill
        check_choice("format", format, FORMATS)
        coco_args = {"train_ann": train_ann, "val_ann": val_ann, "test_ann": test_ann}
        coco_args |= {"train_images": train_images, "val_images": val_images}
        coco_args["test_images"] = test_images
        csv_args = {"train_csv": train_csv, "val_csv": val_csv, "test_csv": test_csv}
        csv_args["image_dir"] = image_dir
        self.paths: dict[str, tuple[Path, Path] | None] = {}
        self._tried: dict[str, list[Path]] = {}
        coco_found = {s: find_split(self.data_dir, s) for s in SPLITS}
        if format == "auto":
            format = self._detect_format(coco_args, csv_args, coco_found)
        for name, args in (("coco", coco_args), ("csv", csv_args)):
            given = [k for k, v in args.items() if v is not None]
            if given and format != name:
                raise ValueError(f"{', '.join(given)} are for format='{name}', not '{format}'")
        self.format = format
        if format == "coco":
            self._coco_paths(coco_args, coco_found)
        elif format == "yolo":
            self._yolo_paths()
        elif format == "voc":
            for split in SPLITS:
                list_file = voc_split_file(self.data_dir, split)
                found = list_file.is_file()
                self.paths[split] = (list_file, self.data_dir / "JPEGImages") if found else None
                self._tried[split] = [list_file]
        else:
            self._csv_paths(csv_args)
        if self.paths["train"] is None:
            raise FileNotFoundError(
                f"no training annotations found under {self.data_dir}: tried "
                + ", ".join(str(p) for p in self._tried["train"])
                + f" ({self._hint('train')})"
            )
        self._loaded: dict[str, CocoAnnotations] = {}
        self._categories: list[dict[str, Any]] | None = None
        self.datasets: dict[str, CocoDetection] = {}

    # ----------------------------------------------------------------- layouts
    def _detect_format(
        self,
        coco_args: dict[str, Any],
        csv_args: dict[str, Any],
        coco_found: dict[str, tuple[Path | None, Path | None, list[Path]]],
    ) -> str:
        """The layout of ``data_dir`` (COCO first: what this module read before it read others)."""
        if any(v is not None for v in csv_args.values()):
            return "csv"
        if any(v is not None for v in coco_args.values()) or coco_found["train"][0] is not None:
            return "coco"
        if find_yolo_yaml(self.data_dir) is not None:
            return "yolo"
        if voc_split_file(self.data_dir, "train").is_file():
            return "voc"
        if (self.data_dir / "train.csv").is_file():
            return "csv"
        tried = coco_found["train"][2] + [self.data_dir / n for n in ("data.yaml", "dataset.yaml")]
        tried += [voc_split_file(self.data_dir, "train"), self.data_dir / "train.csv"]
        raise FileNotFoundError(
            f"no training annotations found under {self.data_dir}: tried "
            + ", ".join(str(p) for p in tried)
            + " (or pass train_ann=... and train_images=..., train_csv=..., or format=...)"
        )

    def _coco_paths(
        self,
        args: dict[str, Any],
        found: dict[str, tuple[Path | None, Path | None, list[Path]]],
    ) -> None:
        for split in SPLITS:
            found_ann, found_images, tried = found[split]
            ann, images = args[f"{split}_ann"], args[f"{split}_images"]
            ann = Path(ann) if ann is not None else found_ann
            images = Path(images) if images is not None else found_images
            if ann is not None and images is None:
                # An explicit annotation file without a folder: images next to it.
                images = ann.parent
            self.paths[split] = (ann, images) if ann is not None else None
            self._tried[split] = tried

    def _yolo_paths(self) -> None:
        yaml_file = find_yolo_yaml(self.data_dir)
        if yaml_file is None:
            raise FileNotFoundError(
                "format='yolo': no data set description found: tried "
                + ", ".join(str(self.data_dir / n) for n in ("data.yaml", "dataset.yaml"))
                + " (or pass data_dir='path/to/data.yaml')"
            )
        desc = read_yolo_yaml(yaml_file)
        for split in SPLITS:
            self.paths[split] = (yaml_file, desc[split][0]) if split in desc else None
            self._tried[split] = [yaml_file]

    def _csv_paths(self, args: dict[str, Any]) -> None:
        image_dir = Path(args["image_dir"]) if args["image_dir"] is not None else self.data_dir
        for split in SPLITS:
            given = args[f"{split}_csv"]
            csv_file = Path(given) if given is not None else self.data_dir / f"{split}.csv"
            found = given is not None or csv_file.is_file()
            self.paths[split] = (csv_file, image_dir) if found else None
            self._tried[split] = [csv_file]

    def _hint(self, split: str) -> str:
        return {
            "coco": f"or pass {split}_ann=... and {split}_images=...",
            "yolo": f"data.yaml has no '{split}' entry",
            "voc": f"VOC lists the {split} image ids in ImageSets/Main/{split}.txt",
            "csv": f"or pass {split}_csv=...",
        }[self.format]

    def _load(self, split: str) -> CocoAnnotations:
        """The split's records, read once (the training split also gives VOC/CSV classes)."""
        if split in self._loaded:
            return self._loaded[split]
        paths = self.paths[split]
        if paths is None:
            raise FileNotFoundError(
                f"no {split} annotations found under {self.data_dir}: tried "
                + ", ".join(str(p) for p in self._tried[split])
                + f" ({self._hint(split)})"
            )
        size = self.min_box_size
        # Classes come from the training split; the others may only use those names.
        names = None if split == "train" else self.class_names
        if self.format == "coco":
            ann = load_coco(paths[0], paths[1], categories=self.categories, min_box_size=size)
        elif self.format == "yolo":
            ann = load_yolo(paths[0], split, min_box_size=size)
        elif self.format == "voc":
            ann = load_voc(self.data_dir, split, class_names=names, min_box_size=size)
        else:
            ann = load_csv(paths[0], paths[1], class_names=names, min_box_size=size)
        self._loaded[split] = ann
        return ann

    # ----------------------------------------------------------------- classes
    @property
    def categories(self) -> list[dict[str, Any]]:
        """The training annotations' categories (``id``, ``name``), sorted by id."""
        if self._categories is None:
            if self.format == "coco":
                self._categories = read_categories(self.paths["train"][0])
            elif self.format == "yolo":
                names = read_yolo_yaml(self.paths["train"][0])["names"]
                self._categories = [{"id": k, "name": v} for k, v in names.items()]
            else:
                self._categories = self._load("train").categories
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
        ann = self._load(split)
        cat_to_label = {c: i for i, c in enumerate(self.category_ids)}
        self.datasets[split] = CocoDetection(
            ann,
            self._transform(split),
            cat_to_label,
            self.image_size,
            skip_unreadable=split != "train",
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
