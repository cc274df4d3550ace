"""Callbacks that keep long runs safe: non-finite loss/weight checks and a checkpoint on SIGTERM.

AutoTrainer adds both by default. They work with any LightningModule; AutoTimm's tasks (through
``BaseTask.log_loss``) also report their named loss terms, so an error names the term at fault.

Lightning already writes every checkpoint atomically (``torch.save`` into memory, then a
temporary file that is renamed onto the final name), so a killed process leaves the previous
checkpoint intact; these callbacks add what Lightning leaves to the user.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities.exceptions import SIGTERMException

from autotimm_trainer import _log

#: Name of the checkpoint written when the run receives SIGTERM.
INTERRUPTED_CHECKPOINT = "interrupted.ckpt"


class NonFiniteLossError(FloatingPointError):
    """A training loss term became NaN or infinite (the message names the step and the term)."""


def _fmt(value: torch.Tensor) -> str:
    v = float(value.detach().float().reshape(-1)[0]) if value.numel() else math.nan
    return str(v)


class FiniteCheck(Callback):
    """Stop training when a loss becomes NaN/inf, and never save non-finite weights.

    The loss is checked before ``backward``, so the failing step changes no weight, and the run
    ends with :class:`NonFiniteLossError` naming the global step, epoch, batch and loss terms
    (those the module logged through ``BaseTask.log_loss``, else the returned ``loss``).
    Independently, a checkpoint whose weights hold NaN/inf is refused (a ``FloatingPointError``
    before anything is written), so a good best or last checkpoint is never replaced by one.

    Args:
        check_loss: stop on a non-finite training loss. ``False`` only warns once and trains on
            (e.g. when mixed precision's gradient scaler is trusted to skip such steps); the
            weight check at save time stays on. Default True.
    """

    def __init__(self, check_loss: bool = True) -> None:
        self.check_loss = check_loss
        self._batch_idx = -1
        self._warned = False

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._batch_idx = batch_idx
        terms = getattr(pl_module, "_train_loss_terms", None)
        if isinstance(terms, dict):
            terms.clear()  # only this step's terms are judged

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        terms: dict[str, torch.Tensor] = dict(getattr(pl_module, "_train_loss_terms", None) or {})
        terms.setdefault("loss", loss)
        names = list(terms)
        # One device sync for all terms.
        finite = torch.stack([torch.isfinite(terms[n].detach()).all() for n in names]).tolist()
        if all(finite):
            return
        bad = [n for n, ok in zip(names, finite) if not ok]
        # The parts first: the total is non-finite whenever one of them is.
        bad.sort(key=lambda n: n == "loss")
        where = (
            f"global step {trainer.global_step} (epoch {trainer.current_epoch}, "
            f"batch {self._batch_idx})"
        )
        values = ", ".join(f"{n}={_fmt(terms[n])}" for n in bad)
        if not self.check_loss:
            if not self._warned:
                _log.warn(
                    f"Non-finite training loss at {where}: {values}; training on because "
                    "check_finite_loss=False (this is reported once)."
                )
                self._warned = True
            return
        raise NonFiniteLossError(
            f"Training loss term '{bad[0]}' is {_fmt(terms[bad[0]])} at {where}"
            + (f" (non-finite: {values})" if len(bad) > 1 else "")
            + ". Training stopped before this step updated any weight; the checkpoints saved "
            "so far are intact. Try a lower learning rate, gradient_clip_val, or check the "
            "data of this batch; pass check_finite_loss=False to AutoTrainer to train on anyway."
        )

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
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


def find_last_checkpoint(root: str | Path, extra_dirs: list[str | Path] = ()) -> str | None:
    """The most recently written ``.ckpt`` in AutoTrainer's checkpoint folders under ``root``.

    Looks in ``extra_dirs`` and every ``checkpoints*`` folder below ``root`` (``runs/version_N``
    and logger run folders alike); None when there is none.
    """
    found: list[Path] = []
    for d in extra_dirs:
        if d and Path(d).is_dir():
            found += Path(d).glob("*.ckpt")
    root = Path(root)
    if root.is_dir():
        found += (p for p in root.glob("**/checkpoints*/*.ckpt") if p.is_file())
    if not found:
        return None
    return str(max(found, key=lambda p: p.stat().st_mtime_ns))
