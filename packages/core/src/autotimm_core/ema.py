"""Weight EMA for every task: Lightning's weight-averaging callback with timm's EMA schedule."""

from __future__ import annotations

from typing import Any

import torch
from pytorch_lightning.callbacks import WeightAveraging


def ema_decay_at(decay: float, num_averaged: int) -> float:
    """The decay of the ``num_averaged``-th update: ``min(decay, (1 + n) / (10 + n))``.

    timm's ``ModelEmaV3(use_warmup=True)`` warm-up: early updates follow the weights closely, so
    a short run's EMA is not stuck near the random initialisation (with a fixed 0.9998 it would
    take ~5000 steps to forget it).
    """
    return min(decay, (1.0 + num_averaged) / (10.0 + num_averaged))


class ModelEma(WeightAveraging):
    """Exponential moving average of a task's weights (parameters and float buffers).

    Built on Lightning's ``WeightAveraging`` callback (torch's ``AveragedModel``), which already
    does what an EMA needs under a Trainer: validation runs on the averaged weights (swapped in
    and out), checkpoints hold them as ``state_dict`` (so the best checkpoint and a loaded model
    are the EMA) with the live weights beside them for resuming, a resumed fit restores both,
    and the end of ``fit`` leaves the averaged weights in the model (``predict``, ``test``). The
    update rule is timm's ``ModelEmaV3`` with warm-up (:func:`ema_decay_at`); integer buffers
    (BatchNorm's ``num_batches_tracked``) are copied, not averaged.

    ``BaseTask(ema=True)`` brings it through ``configure_callbacks``, after ``DataContract``.

    Args:
        decay: the EMA decay once warmed up. Default 0.9998 (timm's).
    """

    def __init__(self, decay: float = 0.9998) -> None:
        if not isinstance(decay, (int, float)) or isinstance(decay, bool) or not 0 < decay < 1:
            raise ValueError(f"ema_decay must be a number in (0, 1), got {decay!r}")
        self.decay = float(decay)
        super().__init__(use_buffers=True, multi_avg_fn=self._update)

    @property
    def state_key(self) -> str:
        # One per fit: a stable key, so that a resumed fit finds the state it saved.
        return "ModelEma"

    def _update(
        self,
        averaged: list[torch.Tensor],
        current: list[torch.Tensor],
        num_averaged: torch.Tensor | int,
    ) -> None:
        d = ema_decay_at(self.decay, int(num_averaged))
        floats = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
        for a, c in zip(averaged, current):
            if not a.is_floating_point():
                a.copy_(c)
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], 1.0 - d)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "decay": self.decay}
