"""ImageDataModule: image folders or a built-in data set, as Lightning data loaders."""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from torch.utils.data import DataLoader

from autotimm_classification.builtin import (
    download_builtin,
    load_builtin,
    resolve_dataset_name,
)
from autotimm_classification.datasets import (
    ArrayImageDataset,
    ImageFileDataset,
    collate_skip_broken,
    find_classes,
    scan_split,
    stratified_split,
)
from autotimm_classification.transforms import build_classification_transform
from autotimm_core.data import BaseDataModule, check_image_file

Split = ImageFileDataset | ArrayImageDataset


class ImageDataModule(BaseDataModule):
    """Image classification data: image folders, or a built-in data set by name.

    Folder layout: ``data_dir/train/<class>/<images>``, optionally ``data_dir/val/<class>/...``
    (otherwise a seeded, stratified ``val_split`` of train) and ``data_dir/test/<class>/...``.
    Class names are sorted; the training split's mapping holds for all splits. ``class_names`` and
    ``num_classes`` are set by ``setup``.

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
            downloaded to. Default ``"./data"``.
        dataset_name: a built-in data set instead of folders: ``"CIFAR10"``, ``"CIFAR100"``,
            ``"MNIST"``, ``"FashionMNIST"`` (downloaded by torchvision; grey ones become RGB) or
            ``"digits"`` (scikit-learn's handwritten digits, offline). Any case. Default None.
        val_split: fraction of the training split used for validation when there is no
            ``val/`` folder (or for the built-in sets); 0 disables validation. Default 0.1.
        seed: seed of the validation split. Default 42.
        verify: check every image file's header and end at ``setup`` and leave broken ones
            out, with one warning listing them. Default False.
        download: let ``prepare_data`` download a torchvision data set. Default True.
        **kwargs: the arguments every data module takes (see
            :class:`~autotimm_core.data.BaseDataModule`): ``image_size`` (default None: the
            model's, i.e. its backbone's pretrained input size, else 224), ``batch_size``
            (default 32), ``num_workers`` (4, capped at the CPUs), ``augmentation_preset``
            (``"none"``, ``"light"``, ``"default"``: random-resized crop + flip, ``"strong"``:
            adds TrivialAugment-style ops and random erasing; see
            ``build_classification_transform``), ``transform_backend`` (``"torchvision"`` or
            ``"albumentations"``, the ``autotimm-classification[albumentations]`` extra),
            ``mean``, ``std``, ``interpolation`` (default None: the model's), ``normalize_on_device``
            (True), ``pin_memory``, ``persistent_workers``.

    Raises:
        ValueError: an unknown ``dataset_name``, preset, backend or interpolation, or a bad
            number (at construction); FileNotFoundError/ValueError for a missing or empty folder
            or class folder (at ``setup``).
        ImportError: ``transform_backend="albumentations"`` without the extra installed.
    """

    resize_mode = "crop"
    default_image_size = 224
    distribution = "autotimm-classification"

    def __init__(
        self,
        data_dir: str | os.PathLike = "./data",
        dataset_name: str | None = None,
        val_split: float = 0.1,
        seed: int = 42,
        verify: bool = False,
        download: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Checkpoints load with weights_only=True, which refuses Path objects.
        self.hparams["data_dir"] = os.fspath(data_dir)
        if not (isinstance(val_split, (int, float)) and 0 <= val_split < 1):
            raise ValueError(f"val_split must be in [0, 1), got {val_split!r}")
        self.data_dir = Path(data_dir)
        self.dataset_key = None if dataset_name is None else resolve_dataset_name(dataset_name)
        self.dataset_name = dataset_name
        self.val_split = float(val_split)
        self.seed = seed
        self.verify = verify
        self.download = download
        self.class_names: list[str] | None = None
        self.train_dataset: Split | None = None
        self.val_dataset: Split | None = None
        self.test_dataset: Split | None = None

    @property
    def num_classes(self) -> int | None:
        """Number of classes (None before ``setup``)."""
        return None if self.class_names is None else len(self.class_names)

    # ------------------------------------------------------------------ preparing
    def prepare_data(self) -> None:
        """Download a torchvision data set (once per node)."""
        if self.dataset_key is not None and self.download:
            download_builtin(self.dataset_key, self.data_dir)

    def setup(self, stage: str | None = None) -> None:
        """Read the splits (once) and build their transforms from :attr:`data_config`."""
        if self.class_names is None:
            if self.dataset_key is not None:
                self._setup_builtin()
            else:
                self._setup_folders(stage)
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
        ):
            if ds is not None:
                ds.transform = tf

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

    def _split_train(self, train: Split) -> tuple[Split, Split | None]:
        if self.val_split == 0:
            return train, None
        keep, held = stratified_split(train.targets, self.val_split, self.seed)
        return train.subset(keep), train.subset(held)

    def _verified(self, samples: list[tuple[str, int]]) -> list[tuple[str, int]]:
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

    # ------------------------------------------------------------------ loaders
    def _loader(self, dataset: Split | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("This split is not available: call setup() first, or add its folder")
        # collate_skip_broken drops the items of unreadable files (None) from each batch.
        return self.make_loader(dataset, train, collate_fn=collate_skip_broken)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, train=True)

    def val_dataloader(self) -> DataLoader | list:
        # No validation split (val_split=0, no val/ folder): an empty list disables validation.
        return [] if self.val_dataset is None else self._loader(self.val_dataset, train=False)

    def test_dataloader(self) -> DataLoader:
        if self.test_dataset is None:
            raise RuntimeError(
                f"No test split: add a '{self.data_dir / 'test'}' folder with one folder per class"
            )
        return self._loader(self.test_dataset, train=False)

    def predict_dataloader(self) -> DataLoader:
        """The test split, else the validation split."""
        dataset = self.test_dataset if self.test_dataset is not None else self.val_dataset
        return self._loader(dataset, train=False)

    # ------------------------------------------------------------------ skipped files
    def _attach_skip_report(self) -> None:
        trainer = self.trainer
        if trainer is None or any(isinstance(c, _SkippedImagesReport) for c in trainer.callbacks):
            return
        trainer.callbacks.append(_SkippedImagesReport(self))


class _SkippedImagesReport(Callback):
    """Warns at the end of each epoch how many unreadable images its data loaders skipped."""

    def __init__(self, datamodule: ImageDataModule) -> None:
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
