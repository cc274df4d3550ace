"""Helpers for running evaluation under several processes (DDP)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence, Sized

import pytorch_lightning as pl
import torch
from torch.utils.data import DistributedSampler

from autotimm_core._lightning import uses_distributed_sampler


class UnpaddedDistributedSampler(DistributedSampler):
    """A ``DistributedSampler`` that gives every sample to exactly one rank, without padding.

    Rank ``r`` of ``n`` gets ``indices[r::n]``, so the ranks' shares differ by at most one and
    together hold each sample once. torch's ``DistributedSampler`` pads (or, with
    ``drop_last``, trims) the split to a multiple of ``n``, which suits training but makes
    synced evaluation metrics count the repeated samples twice; Lightning's own unpadded
    sampler lives in its private ``overrides`` package. Subclassing ``DistributedSampler``
    keeps what Lightning relies on: it leaves a ``DistributedSampler`` in place under DDP
    instead of replacing it, and calls its ``set_epoch``.

    Args:
        dataset: the data set (needs ``len``).
        num_replicas: number of processes; default: the process group's world size.
        rank: this process's rank; default: the process group's rank.
        shuffle: shuffle (with ``seed`` + epoch, the same order on every rank) before
            splitting. Default False.
        seed: shuffling seed. Default 0.
    """

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.total_size = len(dataset)
        self.num_samples = len(range(self.rank, self.total_size, self.num_replicas))

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            indices = torch.randperm(self.total_size, generator=g).tolist()
        else:
            indices = list(range(self.total_size))
        return iter(indices[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples


def unpadded_eval_sampler(
    trainer: pl.Trainer | None, dataset: Sized
) -> UnpaddedDistributedSampler | None:
    """Under several processes, a sampler that gives each evaluation sample to exactly one rank.

    Lightning would put in a ``DistributedSampler``, which pads the split to a multiple of the
    world size by repeating samples, so synced metrics would count those twice. The ranks may
    then run one batch more or less than each other, which is safe outside training as long as
    every rank has a sample: with fewer samples than ranks Lightning's padding is kept.

    Args:
        trainer: the attached trainer; ``None`` (no trainer yet) gives ``None``.
        dataset: the evaluation data set (needs ``len``).

    Returns:
        An :class:`UnpaddedDistributedSampler`, or ``None`` to leave the choice to Lightning:
        one process, fewer samples than processes, or ``Trainer(use_distributed_sampler=False)``.
    """
    if trainer is None or trainer.world_size < 2:
        return None
    if not uses_distributed_sampler(trainer):
        return None
    if len(dataset) < trainer.world_size:
        return None
    return UnpaddedDistributedSampler(
        dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
    )


class WeightedDistributedSampler(DistributedSampler):
    """Draws ``num_samples`` indices with replacement, in proportion to ``weights``, split
    across processes: a ``WeightedRandomSampler`` that knows about DDP.

    Every rank makes the same draw (a generator seeded with ``seed`` + epoch, which Lightning
    advances through ``set_epoch``) and keeps ``draw[rank::num_replicas]``, so the ranks share
    one weighted sample of the data set, as ``DistributedSampler`` shares a permutation. torch's
    ``WeightedRandomSampler`` draws from the global generator on each rank, and Lightning's
    wrapper for custom samplers splits a draw that differs between ranks. Subclassing
    ``DistributedSampler`` makes Lightning keep this sampler as it is.

    Args:
        weights: one non-negative weight per sample (they need not sum to 1).
        num_samples: indices drawn per epoch, over all ranks (rounded up to a multiple of
            ``num_replicas``). Default None: ``len(weights)``.
        num_replicas: number of processes. Default 1 (run under DDP, pass the world size).
        rank: this process's rank. Default 0.
        seed: seed of the draw (plus the epoch). Default 0.

    Raises:
        ValueError: no weights, a negative or non-finite weight, or all weights zero.
    """

    def __init__(
        self,
        weights: Sequence[float] | torch.Tensor,
        num_samples: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
    ) -> None:
        w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
        if w.numel() == 0:
            raise ValueError("WeightedDistributedSampler needs at least one weight")
        if not torch.isfinite(w).all() or (w < 0).any():
            raise ValueError("WeightedDistributedSampler weights must be finite and >= 0")
        if not (w > 0).any():
            raise ValueError("WeightedDistributedSampler weights are all zero: nothing to draw")
        super().__init__(
            range(w.numel()), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed
        )
        self.weights = w
        wanted = w.numel() if num_samples is None else num_samples
        if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        # Every rank runs the same number of steps (an uneven share would hang DDP training):
        # the draw is rounded up to a multiple of the ranks.
        self.num_samples = math.ceil(wanted / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        draw = torch.multinomial(self.weights, self.total_size, replacement=True, generator=g)
        return iter(draw[self.rank :: self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples
