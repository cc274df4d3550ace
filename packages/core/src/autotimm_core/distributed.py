"""Helpers for running evaluation under several processes (DDP)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler


def unpadded_eval_sampler(
    trainer: pl.Trainer | None, dataset: Any
) -> UnrepeatedDistributedSampler | None:
    """Under several processes, a sampler that gives each evaluation sample to exactly one rank.

    Lightning would put in a ``DistributedSampler``, which pads the split to a multiple of the
    world size by repeating samples, so synced metrics would count those twice. The ranks may
    then run one batch more or less than each other, which is safe outside training as long as
    every rank has a sample: with fewer samples than ranks Lightning's padding is kept.

    Args:
        trainer: the attached trainer; ``None`` (no trainer yet) gives ``None``.
        dataset: the evaluation data set (needs ``len``).

    Returns:
        The sampler, or ``None`` to leave the choice to Lightning: one process, fewer samples
        than processes, or ``Trainer(use_distributed_sampler=False)``.
    """
    if trainer is None or trainer.world_size < 2:
        return None
    # Lightning has no public accessor for this Trainer argument.
    if not getattr(trainer._accelerator_connector, "use_distributed_sampler", True):
        return None
    if len(dataset) < trainer.world_size:
        return None
    return UnrepeatedDistributedSampler(
        dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
    )
