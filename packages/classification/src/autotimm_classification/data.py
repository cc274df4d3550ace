"""ImageDataModule: image folders or a built-in data set, as Lightning data loaders."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
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
from autotimm_classification.image_io import check_image_file
from autotimm_classification.transforms import (
    BACKENDS,
    DEFAULT_CROP_PCT,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PRESETS,
    build_transform,
    normalize_images,
)
from autotimm_core import backbone_data_config
from autotimm_core.distributed import unpadded_eval_sampler
from autotimm_core.validation import check_choice

Split = ImageFileDataset | ArrayImageDataset


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class ImageDataModule(pl.LightningDataModule):
    """Image classification data: image folders, or a built-in data set by name.

    Folder layout: ``data_dir/train/<class>/<images>``, optionally ``data_dir/val/<class>/...``
    (otherwise a seeded, stratified ``val_split`` of train) and ``data_dir/test/<class>/...``.
    Class names are sorted; the training split's mapping holds for all splits. ``class_names`` and
    ``num_classes`` are set by ``setup``.

    Images are decoded by ``torchvision.io`` to uint8 tensors, augmented on uint8, and normalized
    last: by default after the batch reaches the model's device (``normalize_on_device``), so
    that the workers hand over, and the GPU copy moves, a quarter of the bytes.

    Unreadable files never stop a run: ``verify=True`` finds empty, unknown and truncated files
    at ``setup`` from their headers and ends, and any that still fail to decode are skipped with
    a warning naming them, plus a count at the end of the epoch.

    Args:
        data_dir: folder with ``train/`` (``val/``, ``test/``), or where a built-in data set is
            downloaded to. Default ``"./data"``.
        dataset_name: a built-in data set instead of folders: ``"CIFAR10"``, ``"CIFAR100"``,
            ``"MNIST"``, ``"FashionMNIST"`` (downloaded by torchvision; grey ones become RGB) or
            ``"digits"`` (scikit-learn's handwritten digits, offline). Any case. Default None.
        image_size: side of the square images the model gets. Default 224.
        batch_size: images per batch. Default 32.
        num_workers: DataLoader worker processes, capped at the CPUs this process may use.
            Default 4.
        val_split: fraction of the training split used for validation when there is no
            ``val/`` folder (or for the built-in sets); 0 disables validation. Default 0.1.
        augmentation_preset: training augmentation: ``"none"``, ``"light"``, ``"default"``
            (random-resized crop + flip) or ``"strong"`` (adds TrivialAugment-style ops and
            random erasing). Default ``"default"``.
        transform_backend: ``"torchvision"`` (transforms.v2) or ``"albumentations"``.
            Default ``"torchvision"``.
        mean: normalization mean; None takes the attached model's backbone pretrained config,
            else ImageNet's. Default None.
        std: normalization standard deviation; None as for ``mean``. Default None.
        interpolation: resize interpolation (``"bilinear"``, ``"bicubic"``, ``"nearest"``); None
            takes the backbone's, else bilinear. Default None.
        normalize_on_device: True: the loaders yield uint8 image batches, converted to float
            and normalized in ``on_after_batch_transfer`` once on the device (as timm's
            prefetcher does); a Trainer runs that hook in fit, validate, test and predict, and
            a loop of your own calls ``data.normalize(images)``. False: the workers normalize
            and the loaders yield float batches. Default True.
        pin_memory: pin batches for faster host-to-GPU copies; None: when CUDA is available.
        persistent_workers: keep workers between epochs; None: when ``num_workers > 0``.
        seed: seed of the validation split. Default 42.
        verify: check every image file's header and end at ``setup`` and leave broken ones
            out, with one warning listing them. Default False.
        download: let ``prepare_data`` download a torchvision data set. Default True.

    Raises:
        ValueError: an unknown ``dataset_name``, preset or backend, or a bad number (at
            construction); FileNotFoundError/ValueError for a missing or empty folder or class
            folder (at ``setup``).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike = "./data",
        dataset_name: str | None = None,
        image_size: int = 224,
        batch_size: int = 32,
        num_workers: int = 4,
        val_split: float = 0.1,
        augmentation_preset: str = "default",
        transform_backend: str = "torchvision",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        interpolation: str | None = None,
        normalize_on_device: bool = True,
        pin_memory: bool | None = None,
        persistent_workers: bool | None = None,
        seed: int = 42,
        verify: bool = False,
        download: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        # Checkpoints load with weights_only=True, which refuses Path objects.
        self.hparams["data_dir"] = os.fspath(data_dir)
        check_choice("augmentation_preset", augmentation_preset, PRESETS)
        check_choice("transform_backend", transform_backend, BACKENDS)
        if not 0 <= val_split < 1:
            raise ValueError(f"val_split must be in [0, 1), got {val_split!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
        self.data_dir = Path(data_dir)
        self.dataset_key = None if dataset_name is None else resolve_dataset_name(dataset_name)
        self.dataset_name = dataset_name
        self.image_size = image_size
        self.batch_size = batch_size  # Lightning's batch-size finder rewrites this attribute
        self.num_workers = min(num_workers, _available_cpus())
        self.val_split = float(val_split)
        self.augmentation_preset = augmentation_preset
        self.transform_backend = transform_backend
        self.mean, self.std, self.interpolation = mean, std, interpolation
        self.normalize_on_device = bool(normalize_on_device)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.persistent_workers = (
            self.num_workers > 0 if persistent_workers is None else bool(persistent_workers)
        )
        self.seed = seed
        self.verify = verify
        self.download = download
        self.class_names: list[str] | None = None
        self.train_dataset: Split | None = None
        self.val_dataset: Split | None = None
        self.test_dataset: Split | None = None
        self.data_config: dict[str, Any] = {}

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
        """Read the splits (once) and build the transforms from the attached model's config."""
        if self.class_names is None:
            if self.dataset_key is not None:
                self._setup_builtin()
            else:
                self._setup_folders(stage)
        self.data_config = self._resolve_data_config()
        train_tf = build_transform(True, preset=self.augmentation_preset, **self._tf_kwargs())
        eval_tf = build_transform(False, **self._tf_kwargs())
        for ds, tf in (
            (self.train_dataset, train_tf),
            (self.val_dataset, eval_tf),
            (self.test_dataset, eval_tf),
        ):
            if ds is not None:
                ds.transform = tf
        self._attach_skip_report()

    def _tf_kwargs(self) -> dict[str, Any]:
        cfg = self.data_config
        return {
            "image_size": cfg["image_size"],
            "backend": self.transform_backend,
            "mean": cfg["mean"],
            "std": cfg["std"],
            "interpolation": cfg["interpolation"],
            "crop_pct": cfg["crop_pct"],
            "normalize": not self.normalize_on_device,
        }

    # ------------------------------------------------------------------ normalization
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images from these loaders to normalized float32, on their own device.

        Uses the mean and std resolved at ``setup`` (the backbone's, else ImageNet's); float
        images are returned unchanged.
        """
        if not self.data_config:
            raise RuntimeError("ImageDataModule.normalize needs setup() first (it fixes mean/std)")
        return normalize_images(images, self.data_config["mean"], self.data_config["std"])

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Normalize the uint8 images of a batch on its device (``normalize_on_device``)."""
        if (
            self.normalize_on_device
            and isinstance(batch, (list, tuple))
            and batch
            and isinstance(batch[0], torch.Tensor)
            and batch[0].dtype == torch.uint8
        ):
            return type(batch)([self.normalize(batch[0]), *batch[1:]])
        return batch

    def _resolve_data_config(self) -> dict[str, Any]:
        # The attached model's pretrained config says how its backbone expects input.
        model_cfg: dict[str, Any] = {}
        module = self.trainer.lightning_module if self.trainer is not None else None
        backbone = getattr(module, "backbone", None)
        if backbone is not None:
            model_cfg = backbone_data_config(backbone)
        interpolation = self.interpolation or model_cfg.get("interpolation") or "bilinear"
        if interpolation not in ("nearest", "bilinear", "bicubic"):
            interpolation = "bicubic"  # timm's other names ("random", "lanczos"...)
        return {
            "image_size": self.image_size,
            "mean": [float(v) for v in (self.mean or model_cfg.get("mean") or IMAGENET_MEAN)],
            "std": [float(v) for v in (self.std or model_cfg.get("std") or IMAGENET_STD)],
            "interpolation": interpolation,
            "crop_pct": float(model_cfg.get("crop_pct") or DEFAULT_CROP_PCT),
        }

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
        sampler = None if train else unpadded_eval_sampler(self.trainer, dataset)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train,
            sampler=sampler,
            # A last batch of one image breaks BatchNorm in training.
            drop_last=train and len(dataset) > self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            collate_fn=collate_skip_broken,
        )

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
