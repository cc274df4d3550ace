"""The callbacks AutoTrainer adds; each works with any LightningModule.

- :class:`MonitorCheck`: fails after the first validation when the monitored metric is never
  logged, naming the metrics that are.
- :class:`RunStats`: counts samples and times the fit for the end-of-fit summary.
- :class:`FiniteCheck`: stops on a NaN/inf training loss before it changes a weight, and never
  saves non-finite weights (:class:`NonFiniteLossError`).
- :class:`InterruptCheckpoint`: on SIGTERM, saves ``interrupted.ckpt`` to resume from.

Lightning already writes every checkpoint atomically (``torch.save`` into memory, then a
temporary file that is renamed onto the final name), so a killed process leaves the previous
checkpoint intact; these callbacks add what Lightning leaves to the user.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities.data import extract_batch_size
from pytorch_lightning.utilities.exceptions import SIGTERMException

from autotimm_trainer import _log

#: Name of the checkpoint written when the run receives SIGTERM.
INTERRUPTED_CHECKPOINT = "interrupted.ckpt"


class NonFiniteLossError(FloatingPointError):
    """A training loss term became NaN or infinite (the message names the step and the term)."""


def _first(value: torch.Tensor) -> torch.Tensor:
    """The first element as a float32 scalar (NaN for an empty tensor), without a device read."""
    flat = value.detach().float().reshape(-1)
    return flat[0] if flat.numel() else torch.tensor(math.nan, device=value.device)


#: The optional LightningModule method :class:`FiniteCheck` asks for a step's named loss terms.
LOSS_TERMS_HOOK = "training_loss_terms"


class FiniteCheck(Callback):
    """Stop training when a loss becomes NaN/inf, and never save non-finite weights.

    The loss is checked before ``backward``, so the failing step changes no weight, and the run
    ends with :class:`NonFiniteLossError` naming the global step, epoch, batch and loss term.

    The loss terms come from an optional hook: a LightningModule that defines
    ``training_loss_terms(self) -> Mapping[str, Tensor]`` returns the named terms of the current
    training step (``{"loss": ..., "loss_bbox_regression": ...}``), and an error then names the
    term at fault. AutoTimm's ``BaseTask`` implements it with the terms logged through
    ``log_loss``. A module without the hook has only the loss ``training_step`` returned checked.

    On an accelerator the check never makes a step wait for the device: each step's verdict stays
    on the device and is read every ``sync_every`` steps, at the end of each training epoch and
    before any checkpoint is saved, one read for all of them; the error then names the first
    failing step, and the steps after it may have changed weights (never a checkpoint). On CPU,
    where reading a value costs nothing, every step is checked before ``backward``.

    Independently, a checkpoint whose weights hold NaN/inf is refused (a ``FloatingPointError``
    before anything is written), so a good best or last checkpoint is never replaced by one.

    Args:
        check_loss: stop on a non-finite training loss. ``False`` only warns once and trains on
            (e.g. when mixed precision's gradient scaler is trusted to skip such steps); the
            weight check at save time stays on. Default True.
        sync_every: on an accelerator, read the pending verdicts every this many steps.
            Default 50.
    """

    def __init__(self, check_loss: bool = True, sync_every: int = 50) -> None:
        self.check_loss = check_loss
        self.sync_every = max(1, int(sync_every))
        self._batch_idx = -1
        self._warned = False
        # Accelerator steps not read yet: (where, names, per-term finite flags, term values).
        self._pending: list[tuple[str, list[str], torch.Tensor, torch.Tensor]] = []

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._batch_idx = batch_idx

    @staticmethod
    def _terms(pl_module: pl.LightningModule, device: torch.device) -> dict[str, torch.Tensor]:
        hook = getattr(pl_module, LOSS_TERMS_HOOK, None)
        if not callable(hook):
            return {}
        terms = hook()
        if not isinstance(terms, Mapping):
            raise TypeError(
                f"{type(pl_module).__name__}.{LOSS_TERMS_HOOK}() must return a mapping of "
                f"term name to tensor, got {type(terms).__name__}"
            )
        # Plain numbers are accepted too; on the loss's device, so that one stack checks them all.
        return {str(k): torch.as_tensor(v, device=device) for k, v in terms.items()}

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        terms = self._terms(pl_module, loss.device)
        terms.setdefault("loss", loss)
        names = list(terms)
        where = (
            f"global step {trainer.global_step} (epoch {trainer.current_epoch}, "
            f"batch {self._batch_idx})"
        )
        flags = torch.stack([torch.isfinite(terms[n].detach()).all() for n in names])
        values = torch.stack([_first(terms[n]) for n in names])
        self._pending.append((where, names, flags, values))
        if loss.device.type == "cpu" or len(self._pending) >= self.sync_every:
            self._flush()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush()

    def _flush(self) -> None:
        """Read the pending verdicts (one device sync) and act on the first failing step."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        ok = torch.stack([flags.all() for _, _, flags, _ in pending]).tolist()
        if all(ok):
            return
        first = ok.index(False)
        where, names, flags, values = pending[first]
        finite, numbers = flags.tolist(), values.tolist()
        later = len(pending) - 1 - first
        bad = [n for n, good in zip(names, finite) if not good]
        # The parts first: the total is non-finite whenever one of them is.
        bad.sort(key=lambda n: n == "loss")
        shown = {n: str(v) for n, v in zip(names, numbers)}
        values_text = ", ".join(f"{n}={shown[n]}" for n in bad)
        if not self.check_loss:
            if not self._warned:
                _log.warn(
                    f"Non-finite training loss at {where}: {values_text}; training on because "
                    "check_finite_loss=False (this is reported once)."
                )
                self._warned = True
            return
        if later:
            effect = (
                f" Found {later} steps later (an accelerator's losses are read every "
                f"{self.sync_every} steps, so that no step waits for it): those steps may have "
                "changed weights, but no checkpoint holds them."
            )
        else:
            effect = " Training stopped before this step updated any weight."
        raise NonFiniteLossError(
            f"Training loss term '{bad[0]}' is {shown[bad[0]]} at {where}"
            + (f" (non-finite: {values_text})" if len(bad) > 1 else "")
            + f".{effect} The checkpoints saved so far are intact. Try a lower learning rate, "
            "gradient_clip_val, or check the data of this batch; pass check_finite_loss=False "
            "to AutoTrainer to train on anyway."
        )

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._flush()  # a failing step not read yet stops the run before anything is written
        state = checkpoint.get("state_dict") or {}
        names = [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()]
        if not names:
            return
        finite = torch.stack([torch.isfinite(state[k]).all() for k in names]).tolist()
        bad = [k for k, ok in zip(names, finite) if not ok]
        if bad:
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise FloatingPointError(
                f"Refusing to save a checkpoint at global step {trainer.global_step} (epoch "
                f"{trainer.current_epoch}): weights hold NaN or inf ({shown}). The checkpoints "
                "saved before are kept unchanged."
            )


class InterruptCheckpoint(Callback):
    """On SIGTERM, save a checkpoint to resume from and tell the user its path.

    Lightning turns SIGTERM into a ``SIGTERMException`` (a ``SystemExit``) at the end of the
    current batch; this callback then writes ``<dirpath>/interrupted.ckpt`` (a mid-epoch
    checkpoint Lightning resumes from) and logs the ``fit(..., ckpt_path=...)`` call. The process
    then exits with status 0, as Lightning does.

    Args:
        dirpath: folder of the checkpoint; ``None`` uses the trainer's checkpoint callback's
            folder, else ``default_root_dir``.
    """

    def __init__(self, dirpath: str | Path | None = None) -> None:
        self.dirpath = dirpath
        #: Path of the checkpoint saved on the last SIGTERM, or None.
        self.saved_path: str | None = None

    def _folder(self, trainer: pl.Trainer) -> Path:
        if self.dirpath is not None:
            return Path(self.dirpath)
        cb = trainer.checkpoint_callback
        dirpath = getattr(cb, "dirpath", None)
        return Path(dirpath) if dirpath else Path(trainer.default_root_dir)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        path = self._folder(trainer) / INTERRUPTED_CHECKPOINT
        trainer.save_checkpoint(path)  # every rank must call it; rank 0 writes
        self.saved_path = str(path)
        _log.info(
            f"Received SIGTERM at global step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}): saved checkpoint {path}. Resume with "
            f"trainer.fit(model, datamodule=..., ckpt_path={str(path)!r}) "
            f'(or ckpt_path="last" with the same default_root_dir).'
        )


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
