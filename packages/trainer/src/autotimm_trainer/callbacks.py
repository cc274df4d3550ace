"""Callbacks AutoTrainer adds: a check that the monitored metric exists, and run statistics."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities.data import extract_batch_size


class MonitorCheck(Callback):
    """Fail after the first validation when a monitored metric is never logged.

    Lightning only notices when it next saves, and its message is easy to miss among the logs;
    this one names the trainer argument and lists what the model does log.

    Args:
        monitor: the metric name (``checkpoint_monitor``).
        argument: the trainer argument named in the error. Default ``"checkpoint_monitor"``.
    """

    def __init__(self, monitor: str, argument: str = "checkpoint_monitor") -> None:
        self.monitor = monitor
        self.argument = argument

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":  # not trainer.validate()
            return
        if self.monitor not in trainer.callback_metrics:
            logged = sorted(trainer.callback_metrics)
            raise ValueError(
                f"{self.argument}={self.monitor!r} is never logged by "
                f"{type(pl_module).__name__}; the logged metrics are {logged}. Pick one of "
                f"them, or log {self.monitor!r} with self.log() in validation."
            )


class RunStats(Callback):
    """Counts training samples and times the fit for the end-of-fit summary.

    Validation time inside an epoch is not counted as training time, so ``images_per_sec`` is
    the training throughput (summed over processes under DDP).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.samples = 0
        self.train_seconds = 0.0
        self.fit_seconds = 0.0
        self.first_epoch = 0
        self.epochs = 0
        self.started = False
        self._fit_t0 = 0.0
        self._epoch_t0 = 0.0
        self._val_t0 = 0.0
        self._val_seconds = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.reset()
        self.started = True
        self._fit_t0 = time.perf_counter()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.first_epoch = trainer.current_epoch  # after a resumed checkpoint was restored

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_t0 = time.perf_counter()
        self._val_seconds = 0.0

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        # A batch with no tensor to count leaves the throughput unknown, not the run broken.
        with contextlib.suppress(Exception):
            self.samples += extract_batch_size(batch)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_t0 = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._val_seconds += time.perf_counter() - self._val_t0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.train_seconds += time.perf_counter() - self._epoch_t0 - self._val_seconds
        self.epochs += 1
        self._val_seconds = 0.0

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fit_seconds = time.perf_counter() - self._fit_t0

    def images_per_sec(self, world_size: int = 1) -> float | None:
        """Training samples per second over all processes; None if nothing was counted."""
        if not self.samples or self.train_seconds <= 0:
            return None
        return self.samples * world_size / self.train_seconds
