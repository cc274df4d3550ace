"""BaseDataModule: the arguments, checks and loaders that every task's data module shares."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, Sampler

from autotimm_core._imports import require
from autotimm_core.data.config import DataConfig, resolve_data_config
from autotimm_core.data.normalize import normalize_images
from autotimm_core.distributed import unpadded_eval_sampler
from autotimm_core.validation import check_choice

#: Augmentation presets every task offers (what each does is the task's own). A ``Literal``, so
#: that the command line lists the choices in ``--help`` and rejects others before building.
Preset = Literal["none", "light", "default", "strong"]
PRESETS: tuple[str, ...] = get_args(Preset)
#: Transform backends every task offers.
Backend = Literal["torchvision", "albumentations"]
BACKENDS: tuple[str, ...] = get_args(Backend)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_batch_size(batch_size: Any) -> int:
    """``batch_size`` if it is a positive int, else a ValueError naming it."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return batch_size


def _distribution_of(cls: type) -> str:
    return cls.__module__.split(".")[0].replace("_", "-")


class BaseDataModule(pl.LightningDataModule):
    """What AutoTimm's data modules share: common arguments, the data contract and the loaders.

    A subclass reads its splits in ``setup``, builds its transforms from :attr:`data_config`
    (rebuilding them in :meth:`on_data_config_change` when a fit gives it the model's), and
    returns :meth:`make_loader` from its ``*_dataloader`` methods.

    Args:
        image_size: side of the square images the model gets. Default None: the model's (its
            ``data_config``, i.e. what its backbone was pretrained at, or the task's default),
            else ``default_image_size``.
        batch_size: images per batch (Lightning's batch-size finder rewrites it).
        num_workers: DataLoader worker processes, capped at the CPUs this process may use.
            Default 4.
        augmentation_preset: training augmentation, one of ``"none"``, ``"light"``,
            ``"default"``, ``"strong"`` (each task documents what they do). Default ``"default"``.
        transform_backend: ``"torchvision"`` (transforms.v2) or ``"albumentations"`` (needs the
            ``albumentations`` extra). Default ``"torchvision"``.
        mean: normalization mean. Default None: the model's (its backbone's), else ImageNet's.
        std: normalization standard deviation. Default None: as for ``mean``.
        interpolation: ``"nearest"``, ``"bilinear"`` or ``"bicubic"``. Default None: the
            model's, else bicubic.
        normalize_on_device: True: the loaders yield uint8 image batches, converted to float
            and normalized in ``on_after_batch_transfer`` once on the device (as timm's
            prefetcher does); a Trainer runs that hook in fit, validate, test and predict, and
            a loop of your own calls ``data.normalize(images)``. False: the workers normalize
            and the loaders yield float batches. Default True.
        pin_memory: pin batches for faster host-to-GPU copies. Default None: when CUDA is
            available.
        persistent_workers: keep workers between epochs. Default None: when ``num_workers > 0``.

    Raises:
        ValueError: a bad number, or an unknown preset, backend or interpolation (the message
            names the parameter and lists the choices).
    """

    #: ``DataConfig.resize_mode`` of the task ("crop" or "letterbox").
    resize_mode: str = "crop"
    #: Input side when neither the user nor the model gives one.
    default_image_size: int = 224
    #: The distribution whose ``[albumentations]`` extra installs that backend (for messages);
    #: None: the one named after the subclass's top-level package (``autotimm_detection`` ->
    #: ``autotimm-detection``).
    distribution: str | None = None

    def __init__(
        self,
        image_size: int | None = None,
        batch_size: int = 32,
        num_workers: int = 4,
        augmentation_preset: Preset = "default",
        transform_backend: Backend = "torchvision",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        interpolation: str | None = None,
        normalize_on_device: bool = True,
        pin_memory: bool | None = None,
        persistent_workers: bool | None = None,
    ) -> None:
        super().__init__()
        # Collects the arguments of every __init__ up the class chain (the subclass's too).
        self.save_hyperparameters()
        # Checkpoints store these and load with weights_only=True, which refuses Path objects.
        for key, value in self.hparams.items():
            if isinstance(value, os.PathLike):
                self.hparams[key] = os.fspath(value)
        check_choice("augmentation_preset", augmentation_preset, PRESETS)
        check_choice("transform_backend", transform_backend, BACKENDS)
        if transform_backend == "albumentations":
            require(
                "albumentations",
                f"{self.distribution or _distribution_of(type(self))}[albumentations]",
                purpose="transform_backend='albumentations'",
            )
        if not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
        self._own_data_config = resolve_data_config(
            None,
            image_size=image_size,
            mean=mean,
            std=std,
            interpolation=interpolation,
            default_image_size=self.default_image_size,
            default_resize_mode=self.resize_mode,
        )
        self._data_config = self._own_data_config
        #: Metrics of the model that cannot sync DDP ranks holding different numbers of
        #: evaluation samples, with advice: ``{class name: what to use instead}``. Filled by
        #: ``DataContract`` from the model's ``unsyncable_eval_metrics()``.
        self.eval_sync_blockers: dict[str, str] = {}
        self.batch_size = check_batch_size(batch_size)
        self.num_workers = min(num_workers, available_cpus())
        self.augmentation_preset = augmentation_preset
        self.transform_backend = transform_backend
        self.normalize_on_device = bool(normalize_on_device)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.persistent_workers = (
            self.num_workers > 0 if persistent_workers is None else bool(persistent_workers)
        )

    # ----------------------------------------------------------------- the data contract
    @property
    def image_size(self) -> int:
        """The input side in use (the merged one during a fit)."""
        return self._data_config.image_size

    @property
    def data_config(self) -> DataConfig:
        """How images are prepared: from this module's arguments, then merged with the model's
        ``data_config`` when a fit (or evaluation) starts (see ``autotimm_core.DataContract``)."""
        return self._data_config

    @data_config.setter
    def data_config(self, config: DataConfig) -> None:
        if not isinstance(config, DataConfig):
            raise TypeError(f"data_config must be a DataConfig, got {type(config).__name__}")
        changed = config != self._data_config
        self._data_config = config
        if changed:
            self.on_data_config_change()

    def on_data_config_change(self) -> None:
        """Called when :attr:`data_config` changes: rebuild the transforms. Default: nothing."""

    # ----------------------------------------------------------------- normalization
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images from these loaders to normalized float32, on their own device.

        Uses the mean and std of :attr:`data_config`; float images are returned unchanged.
        """
        cfg = self._data_config
        return normalize_images(images, cfg.mean, cfg.std)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Normalize the uint8 images (the batch's first item) on the device."""
        if (
            self.normalize_on_device
            and isinstance(batch, (list, tuple))
            and batch
            and isinstance(batch[0], torch.Tensor)
            and batch[0].dtype == torch.uint8
        ):
            return type(batch)([self.normalize(batch[0]), *batch[1:]])
        return batch

    # ----------------------------------------------------------------- loaders
    def eval_sampler(self, dataset: Dataset) -> Sampler | None:
        """The sampler of the validation, test and predict loaders: under DDP each sample on
        exactly one rank (see ``unpadded_eval_sampler``), else Lightning's choice.

        When the model has metrics that cannot sync ranks holding different numbers of
        samples (:attr:`eval_sync_blockers`), Lightning's padding sampler is kept, with a
        warning naming them: a hang or a wrong value would be worse than repeated samples.
        """
        sampler = unpadded_eval_sampler(self.trainer, dataset)
        if sampler is None or not self.eval_sync_blockers:
            return sampler
        advice = " ".join(dict.fromkeys(v for v in self.eval_sync_blockers.values() if v))
        rank_zero_warn(
            f"{', '.join(sorted(self.eval_sync_blockers))} cannot sync DDP ranks that evaluated "
            "different numbers of samples, so evaluation keeps Lightning's DistributedSampler, "
            "which repeats samples when a split does not divide by "
            f"{self.trainer.world_size} processes (they are then counted twice). {advice}".rstrip()
        )
        return None

    def train_sampler(self, dataset: Dataset) -> Sampler | None:
        """The sampler of the training loader. Default None: shuffled (Lightning splits it
        across processes under DDP). A subclass returns e.g. a
        :class:`~autotimm_core.distributed.WeightedDistributedSampler` (see
        :meth:`distributed_args`) for class-balanced batches."""
        return None

    def distributed_args(self) -> dict[str, int]:
        """``{"num_replicas": world size, "rank": global rank}`` of the attached trainer (1 and
        0 without one): what a sampler of one's own needs to split its draw across ranks."""
        trainer = self.trainer
        if trainer is None:
            return {"num_replicas": 1, "rank": 0}
        return {"num_replicas": trainer.world_size, "rank": trainer.global_rank}

    def make_loader(
        self,
        dataset: Dataset,
        train: bool,
        collate_fn: Callable[[list[Any]], Any] | None = None,
    ) -> DataLoader:
        """The DataLoader of one split with this module's settings.

        Training shuffles (or draws with :meth:`train_sampler`) and drops a last batch that is smaller than ``batch_size`` when the
        split holds more than one batch (a batch of one image breaks BatchNorm); evaluation
        keeps every sample, in order.

        Args:
            dataset: the split.
            train: a training loader (shuffled, may drop the last batch).
            collate_fn: batches items; default: PyTorch's.
        """
        sampler = self.train_sampler(dataset) if train else self.eval_sampler(dataset)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            drop_last=train and len(dataset) > self.batch_size,
            num_workers=self.num_workers,
            collate_fn=collate_fn,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
        )
