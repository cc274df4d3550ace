"""ImageDataModule: image folders, CSV files or a built-in data set, as Lightning data loaders."""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from torch.utils.data import DataLoader, Dataset, Sampler

from autotimm_classification.builtin import (
    download_builtin,
    load_builtin,
    resolve_dataset_name,
)
from autotimm_classification.csv_data import (
    CsvTable,
    check_images_exist,
    image_paths,
    label_indices,
    read_csv_table,
    single_labels,
)
from autotimm_classification.datasets import (
    ArrayImageDataset,
    ImageFileDataset,
    collate_skip_broken,
    find_classes,
    scan_split,
    stratified_split,
)
from autotimm_classification.sampling import balanced_sample_weights, class_counts
from autotimm_classification.transforms import build_classification_transform
from autotimm_core.data import (
    IMAGE_EXTENSIONS,
    BaseDataModule,
    ClassCounts,
    check_image_file,
    is_image_file,
)
from autotimm_core.distributed import WeightedDistributedSampler

Split = ImageFileDataset | ArrayImageDataset


class ClassificationDataModule(BaseDataModule):
    """What the classification data modules share: labelled image splits, their transforms
    (``build_classification_transform`` from :attr:`data_config`), the held-out validation
    split, ``verify``, and loaders that skip unreadable files (counted at the end of each epoch).

    A subclass reads ``train_dataset``, ``val_dataset``, ``test_dataset`` and ``class_names`` in
    :meth:`read_splits`, which the first ``setup`` calls.

    Args:
        val_split: fraction of the training split held out for validation when there is no
            validation split of its own; 0 disables validation. Default 0.1.
        seed: seed of that draw. Default 42.
        verify: check every image file's header and end at ``setup`` and leave broken (or
            missing) ones out, with one warning listing them. Default False.
        balanced_sampling: draw training samples with replacement in inverse proportion to
            their class's frequency, so each epoch sees every class about equally often
            (see ``balanced_sample_weights``; a multi-label image weighs as its rarest label).
            The draw is the same on every DDP rank, which keeps a share of it, and changes with
            the epoch. Default False: every sample once per epoch, shuffled.
        predict_dir: a folder of images (searched recursively, no class folders needed) that
            ``predict`` runs on (``autotimm predict --data.predict_dir IMAGES``), prepared as the
            evaluation splits are. Default None: predict on the test split, else validation.
        **kwargs: the arguments of :class:`~autotimm_core.data.BaseDataModule`.
    """

    resize_mode = "crop"
    default_image_size = 224
    distribution = "autotimm-classification"

    def __init__(
        self,
        val_split: float = 0.1,
        seed: int = 42,
        verify: bool = False,
        balanced_sampling: bool = False,
        predict_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.predict_dir = None if predict_dir is None else os.fspath(predict_dir)
        self.predict_dataset: ImageFileDataset | None = None
        if not (isinstance(val_split, (int, float)) and 0 <= val_split < 1):
            raise ValueError(f"val_split must be in [0, 1), got {val_split!r}")
        self.val_split = float(val_split)
        self.seed = seed
        self.verify = verify
        self.balanced_sampling = bool(balanced_sampling)
        self.class_names: list[str] | None = None
        self.train_dataset: Split | None = None
        self.val_dataset: Split | None = None
        self.test_dataset: Split | None = None

    @property
    def num_classes(self) -> int | None:
        """Number of classes (None before ``setup``)."""
        return None if self.class_names is None else len(self.class_names)

    # ------------------------------------------------------------------ preparing
    def read_splits(self, stage: str | None) -> None:
        """Read the splits and set ``class_names`` (the first ``setup`` calls it)."""
        raise NotImplementedError(f"{type(self).__name__} must implement read_splits")

    def setup(self, stage: str | None = None) -> None:
        """Read the splits (once) and build their transforms from :attr:`data_config`."""
        if self.class_names is None:
            self.read_splits(stage)
        if self.predict_dir is not None and self.predict_dataset is None:
            self.predict_dataset = predict_folder(self.predict_dir)
        self._build_transforms()
        self._attach_skip_report()

    def on_data_config_change(self) -> None:
        """The model's config arrived (``DataContract``): rebuild the transforms with it."""
        self._build_transforms()

    def _build_transforms(self) -> None:
        cfg = self.data_config
        common = {"backend": self.transform_backend, "normalize": not self.normalize_on_device}
        train_tf = build_classification_transform(
            True, cfg, preset=self.augmentation_preset, **common
        )
        eval_tf = build_classification_transform(False, cfg, **common)
        for ds, tf in (
            (self.train_dataset, train_tf),
            (self.val_dataset, eval_tf),
            (self.test_dataset, eval_tf),
            (self.predict_dataset, eval_tf),
        ):
            if ds is not None:
                ds.transform = tf

    def _split_train(
        self, train: Split, strata: list[int] | None = None
    ) -> tuple[Split, Split | None]:
        """``(train, val)`` with ``val_split`` of ``train`` held out, seeded and stratified by
        ``strata`` (default: the dataset's class indices)."""
        if self.val_split == 0:
            return train, None
        keep, held = stratified_split(
            train.targets if strata is None else strata, self.val_split, self.seed
        )
        return train.subset(keep), train.subset(held)

    def _csv_image_paths(
        self, table: CsvTable, column: str, image_dir: str | os.PathLike | None
    ) -> list[str]:
        """The image path of each row of ``table``. A missing file is an error naming its CSV
        line, except with ``verify``, which leaves it out as it does broken files."""
        paths = image_paths(table, column, "image_column", image_dir)
        if not self.verify:
            check_images_exist(table, paths)
        return paths

    def _verified(self, samples: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        if not self.verify:
            return samples
        with ThreadPoolExecutor(max_workers=max(self.num_workers, 1)) as pool:
            problems = list(pool.map(check_image_file, [p for p, _ in samples]))
        bad = [(p, why) for (p, _), why in zip(samples, problems) if why is not None]
        if bad:
            listing = "; ".join(f"{p} ({why})" for p, why in bad[:20])
            more = f"; and {len(bad) - 20} more" if len(bad) > 20 else ""
            if len(bad) == len(samples):
                folder = os.path.dirname(os.path.commonpath([p for p, _ in samples]))
                raise ValueError(
                    f"verify: none of the {len(samples)} image files under '{folder}' can be "
                    f"read: {listing}{more}"
                )
            warnings.warn(
                f"verify: left out {len(bad)} of {len(samples)} image files that cannot be read: "
                f"{listing}{more}",
                UserWarning,
                stacklevel=3,
            )
        return [s for s, why in zip(samples, problems) if why is None]

    def class_counts(self) -> ClassCounts | None:
        """Training samples per class (per label for multi-label data) and in all; None before
        ``setup`` or without a training split. What ``ImageClassifier(class_weights=
        "balanced")`` is given (by ``DataContract``) when a fit starts."""
        if self.train_dataset is None or self.num_classes is None:
            return None
        targets = self.train_dataset.targets
        return ClassCounts(class_counts(targets, self.num_classes), len(targets))

    # ------------------------------------------------------------------ loaders
    def train_sampler(self, dataset: Dataset) -> Sampler | None:
        """With ``balanced_sampling``, a class-balanced weighted draw split across DDP ranks."""
        if not self.balanced_sampling or self.num_classes is None:
            return None
        weights = balanced_sample_weights(dataset.targets, self.num_classes)
        return WeightedDistributedSampler(weights, seed=self.seed, **self.distributed_args())

    def _loader(self, dataset: Split | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(
                f"This split is not available: call setup() first, or {self._how_to_add_split()}"
            )
        # collate_skip_broken drops the items of unreadable files (None) from each batch.
        return self.make_loader(dataset, train, collate_fn=collate_skip_broken)

    def _how_to_add_split(self) -> str:
        """How to add a split that is missing (for the loaders' errors)."""
        return "pass its CSV file"

    def _no_test_split(self) -> str:
        """The error of ``test_dataloader`` without a test split."""
        return "No test split: pass test_csv, a CSV file of the test images"

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, train=True)

    def val_dataloader(self) -> DataLoader | list:
        # No validation split (val_split=0, no val/ folder): an empty list disables validation.
        return [] if self.val_dataset is None else self._loader(self.val_dataset, train=False)

    def test_dataloader(self) -> DataLoader:
        if self.test_dataset is None:
            raise RuntimeError(self._no_test_split())
        return self._loader(self.test_dataset, train=False)

    def predict_dataloader(self) -> DataLoader:
        """The images of ``predict_dir`` when given, else the test split, else the validation
        split."""
        dataset = self.predict_dataset
        if dataset is None:
            dataset = self.test_dataset if self.test_dataset is not None else self.val_dataset
        return self._loader(dataset, train=False)

    # ------------------------------------------------------------------ skipped files
    def _attach_skip_report(self) -> None:
        trainer = self.trainer
        if trainer is None or any(isinstance(c, _SkippedImagesReport) for c in trainer.callbacks):
            return
        trainer.callbacks.append(_SkippedImagesReport(self))


class ImageDataModule(ClassificationDataModule):
    """Image classification data: image folders, CSV files, or a built-in data set by name.

    Folder layout: ``data_dir/train/<class>/<images>``, optionally ``data_dir/val/<class>/...``
    (otherwise a seeded, stratified ``val_split`` of train) and ``data_dir/test/<class>/...``.
    Class names are sorted; the training split's mapping holds for all splits. ``class_names`` and
    ``num_classes`` are set by ``setup``.

    CSV files instead (``train_csv``): a header row, then one row per image with its path
    (relative to ``image_dir``) and its label, e.g. ``image_path,label`` / ``cats/1.jpg,cat``.
    Class names are the training CSV's labels, sorted; a label of ``val_csv`` or ``test_csv``
    that it lacks is an error naming the file, line and label. Without ``val_csv``, a seeded,
    stratified ``val_split`` of the training rows validates. A listed image file that does not
    exist is an error naming its CSV line, unless ``verify=True`` leaves it out.

    Images are decoded by ``torchvision.io`` to uint8 tensors, augmented on uint8, and normalized
    last: by default after the batch reaches the model's device (``normalize_on_device``), so
    that the workers hand over, and the GPU copy moves, a quarter of the bytes.

    How images are sized and normalized is :attr:`data_config`: this module's own arguments,
    merged with the model's ``data_config`` when a fit, validation, test or prediction starts
    (``autotimm_core.DataContract``): what is left unset here follows the model (its backbone's
    pretrained config); a value set differently here and on the model is an error naming both.

    Unreadable files never stop a run: ``verify=True`` finds empty, unknown and truncated files
    at ``setup`` from their headers and ends, and any that still fail to decode are skipped with
    a warning naming them, plus a count at the end of the epoch.

    Args:
        data_dir: folder with ``train/`` (``val/``, ``test/``), or where a built-in data set is
            downloaded to. Default None: ``"./data"`` (not used with ``train_csv``).
        dataset_name: a built-in data set instead of folders: ``"CIFAR10"``, ``"CIFAR100"``,
            ``"MNIST"``, ``"FashionMNIST"`` (downloaded by torchvision; grey ones become RGB) or
            ``"digits"`` (scikit-learn's handwritten digits, offline). Any case. Default None.
        val_split: fraction of the training split used for validation when there is no
            ``val/`` folder or ``val_csv`` (or for the built-in sets); 0 disables validation.
            Default 0.1.
        seed: seed of the validation split. Default 42.
        verify: check every image file's header and end at ``setup`` and leave broken (and, with
            CSV files, missing) ones out, with one warning listing them. Default False.
        balanced_sampling: draw training images in inverse proportion to their class's
            frequency (with replacement), so each epoch sees every class about equally often;
            DDP-aware. Default False.
        download: let ``prepare_data`` download a torchvision data set. Default True.
        predict_dir: a folder of images (recursively, no class folders) that ``predict`` runs
            on; see :class:`ClassificationDataModule`. Default None: the test split, else val.
        train_csv: CSV file of the training images, instead of folders. Default None.
        val_csv: CSV file of the validation images (needs ``train_csv``). Default None.
        test_csv: CSV file of the test images (needs ``train_csv``). Default None.
        image_dir: folder the CSV image paths are relative to (absolute paths are kept).
            Default None: each CSV file's own folder.
        image_column: the CSV column of image paths. Default ``"image_path"``.
        label_column: the CSV column of labels (class names). Default ``"label"``.
        **kwargs: the arguments every data module takes (see
            :class:`~autotimm_core.data.BaseDataModule`): ``image_size`` (default None: the
            model's, i.e. its backbone's pretrained input size, else 224), ``batch_size``
            (default 32), ``num_workers`` (4, capped at the CPUs), ``augmentation_preset``
            (``"none"``, ``"light"``, ``"default"``: random-resized crop + flip, or at
            ``image_size <= 64`` the ``"light"`` crop, ``"strong"``: adds TrivialAugment-style
            ops and random erasing; see
            ``build_classification_transform``), ``transform_backend`` (``"torchvision"`` or
            ``"albumentations"``, the ``autotimm-classification[albumentations]`` extra),
            ``mean``, ``std``, ``interpolation`` (default None: the model's), ``normalize_on_device``
            (True), ``pin_memory``, ``persistent_workers``.

    Raises:
        ValueError: an unknown ``dataset_name``, preset, backend or interpolation, a bad number,
            or two data sources at once (``train_csv`` with ``data_dir`` or ``dataset_name``)
            (at construction); FileNotFoundError/ValueError for a missing or empty folder or
            class folder, or a missing or bad CSV file, column, row or image (at ``setup``).
        ImportError: ``transform_backend="albumentations"`` without the extra installed.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike | None = None,
        dataset_name: str | None = None,
        val_split: float = 0.1,
        seed: int = 42,
        verify: bool = False,
        download: bool = True,
        train_csv: str | os.PathLike | None = None,
        val_csv: str | os.PathLike | None = None,
        test_csv: str | os.PathLike | None = None,
        image_dir: str | os.PathLike | None = None,
        image_column: str = "image_path",
        label_column: str = "label",
        balanced_sampling: bool = False,
        predict_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            val_split=val_split,
            seed=seed,
            verify=verify,
            balanced_sampling=balanced_sampling,
            predict_dir=predict_dir,
            **kwargs,
        )
        if train_csv is not None:
            if dataset_name is not None:
                raise ValueError(
                    "train_csv and dataset_name are two data sources: pass train_csv (your CSV "
                    "files) or dataset_name (a built-in data set), not both"
                )
            if data_dir is not None:
                raise ValueError(
                    "train_csv and data_dir are two data sources: pass train_csv (CSV files; "
                    "image paths are relative to image_dir) or data_dir (image folders), not both"
                )
        else:
            given = [n for n, v in (("val_csv", val_csv), ("test_csv", test_csv)) if v is not None]
            if image_dir is not None:
                given.append("image_dir")
            if given:
                raise ValueError(
                    f"{', '.join(given)} need(s) train_csv: the class names come from the "
                    "training CSV"
                )
        if image_column == label_column:
            raise ValueError(
                f"image_column and label_column must differ, both are {image_column!r}"
            )
        data_dir = "./data" if data_dir is None else data_dir
        self.data_dir = Path(data_dir)
        self.dataset_key = None if dataset_name is None else resolve_dataset_name(dataset_name)
        self.dataset_name = dataset_name
        self.download = download
        self.train_csv = None if train_csv is None else Path(train_csv)
        self.val_csv = None if val_csv is None else Path(val_csv)
        self.test_csv = None if test_csv is None else Path(test_csv)
        self.image_dir = None if image_dir is None else Path(image_dir)
        self.image_column = image_column
        self.label_column = label_column

    # ------------------------------------------------------------------ preparing
    def prepare_data(self) -> None:
        """Download a torchvision data set (once per node)."""
        if self.dataset_key is not None and self.download:
            download_builtin(self.dataset_key, self.data_dir)

    def read_splits(self, stage: str | None) -> None:
        if self.train_csv is not None:
            self._setup_csv()
        elif self.dataset_key is not None:
            self._setup_builtin()
        else:
            self._setup_folders(stage)

    def _setup_builtin(self) -> None:
        train, classes = load_builtin(self.dataset_key, self.data_dir, "train")
        self.test_dataset, _ = load_builtin(self.dataset_key, self.data_dir, "test")
        self.train_dataset, self.val_dataset = self._split_train(train)
        self.class_names = classes

    def _setup_folders(self, stage: str | None) -> None:
        root = self.data_dir
        train_dir, val_dir, test_dir = root / "train", root / "val", root / "test"
        if not train_dir.is_dir() and stage in ("test", "predict") and test_dir.is_dir():
            classes = find_classes(test_dir)  # evaluating alone: the test split names the classes
        else:
            classes = find_classes(train_dir)
        class_to_idx = {name: i for i, name in enumerate(classes)}
        if train_dir.is_dir():
            train = ImageFileDataset(self._verified(scan_split(train_dir, class_to_idx)))
            if val_dir.is_dir():
                self.train_dataset = train
                self.val_dataset = ImageFileDataset(
                    self._verified(scan_split(val_dir, class_to_idx))
                )
            else:
                self.train_dataset, self.val_dataset = self._split_train(train)
        if test_dir.is_dir():
            self.test_dataset = ImageFileDataset(self._verified(scan_split(test_dir, class_to_idx)))
        self.class_names = classes

    def _setup_csv(self) -> None:
        train_table = read_csv_table(self.train_csv)
        train_labels = single_labels(train_table, self.label_column)
        classes = sorted(set(train_labels))
        class_to_idx = {name: i for i, name in enumerate(classes)}

        def split(table: CsvTable, labels: list[str]) -> ImageFileDataset:
            targets = label_indices(table, labels, self.label_column, class_to_idx, self.train_csv)
            paths = self._csv_image_paths(table, self.image_column, self.image_dir)
            return ImageFileDataset(self._verified(list(zip(paths, targets))))

        train = split(train_table, train_labels)
        if self.val_csv is not None:
            val_table = read_csv_table(self.val_csv)
            self.train_dataset = train
            self.val_dataset = split(val_table, single_labels(val_table, self.label_column))
        else:
            self.train_dataset, self.val_dataset = self._split_train(train)
        if self.test_csv is not None:
            test_table = read_csv_table(self.test_csv)
            self.test_dataset = split(test_table, single_labels(test_table, self.label_column))
        self.class_names = classes

    # ------------------------------------------------------------------ loaders
    def _how_to_add_split(self) -> str:
        return "pass its CSV file" if self.train_csv is not None else "add its folder"

    def _no_test_split(self) -> str:
        if self.train_csv is not None:
            return super()._no_test_split()
        return f"No test split: add a '{self.data_dir / 'test'}' folder with one folder per class"


class _SkippedImagesReport(Callback):
    """Warns at the end of each epoch how many unreadable images its data loaders skipped."""

    def __init__(self, datamodule: ClassificationDataModule) -> None:
        self.datamodule = datamodule
        self.reported: dict[str, int] = {}

    def _report(self, stage: str, dataset: Split | None, epoch: int) -> None:
        counter = getattr(dataset, "skipped", None)
        if counter is None:
            return
        total = counter.total()
        new = total - self.reported.get(stage, 0)
        self.reported[stage] = total
        if new:
            warnings.warn(
                f"{new} unreadable image file(s) skipped in the {stage} data, epoch {epoch} "
                "(each is named in an earlier warning).",
                RuntimeWarning,
                stacklevel=2,
            )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report("train", self.datamodule.train_dataset, trainer.current_epoch)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._report("val", self.datamodule.val_dataset, trainer.current_epoch)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report("test", self.datamodule.test_dataset, trainer.current_epoch)


def predict_folder(folder: str | os.PathLike) -> ImageFileDataset:
    """Every image file under ``folder`` (recursively, sorted), unlabelled (target -1): what
    ``predict_dir`` predicts on.

    Raises:
        FileNotFoundError: ``folder`` is not a folder. ValueError: it holds no image file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"predict_dir='{folder}' is not a folder")
    files = sorted(str(p) for p in root.rglob("*") if p.is_file() and is_image_file(p))
    if not files:
        raise ValueError(
            f"predict_dir='{folder}' holds no image file (extensions: {', '.join(IMAGE_EXTENSIONS)})"
        )
    return ImageFileDataset([(f, -1) for f in files])
