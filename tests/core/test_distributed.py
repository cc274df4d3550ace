"""unpadded_eval_sampler: every evaluation sample on exactly one rank, or Lightning's choice."""

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
from torch.utils.data import DistributedSampler

from autotimm_core._lightning import uses_distributed_sampler
from autotimm_core.distributed import UnpaddedDistributedSampler, unpadded_eval_sampler


def _trainer(world_size: int, rank: int = 0, use_distributed_sampler: bool = True):
    return SimpleNamespace(
        world_size=world_size,
        global_rank=rank,
        _accelerator_connector=SimpleNamespace(use_distributed_sampler=use_distributed_sampler),
    )


def test_odd_split_is_shared_without_repeats():
    data = list(range(5))
    seen = []
    for rank in range(2):
        sampler = unpadded_eval_sampler(_trainer(2, rank), data)
        assert isinstance(sampler, UnpaddedDistributedSampler)
        # a DistributedSampler: Lightning leaves it in place under DDP and calls set_epoch
        assert isinstance(sampler, DistributedSampler)
        seen.append(list(sampler))
        assert len(sampler) == len(seen[-1])
    assert seen == [[0, 2, 4], [1, 3]]  # in order, 5 samples, none twice


@pytest.mark.parametrize(("n", "world"), [(7, 3), (8, 4), (10, 4), (3, 3)])
def test_shares_cover_the_data_once(n, world):
    shares = [list(UnpaddedDistributedSampler(range(n), world, r)) for r in range(world)]
    assert sorted(i for s in shares for i in s) == list(range(n))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_shuffle_is_the_same_permutation_on_every_rank_and_changes_per_epoch():
    samplers = [UnpaddedDistributedSampler(range(9), 2, r, shuffle=True, seed=3) for r in (0, 1)]
    first = [list(s) for s in samplers]
    assert sorted(first[0] + first[1]) == list(range(9))
    assert first[0] + first[1] != list(range(0, 9, 2)) + list(range(1, 9, 2))
    for s in samplers:
        s.set_epoch(1)
    second = [list(s) for s in samplers]
    assert sorted(second[0] + second[1]) == list(range(9)) and second != first


def test_lightning_keeps_the_choice_where_unpadded_cannot_work():
    data = list(range(5))
    assert unpadded_eval_sampler(None, data) is None  # no trainer attached
    assert unpadded_eval_sampler(_trainer(1), data) is None  # one process
    assert unpadded_eval_sampler(_trainer(8), data) is None  # a rank would get nothing
    assert unpadded_eval_sampler(_trainer(2, use_distributed_sampler=False), data) is None


@pytest.mark.parametrize("value", [True, False])
def test_use_distributed_sampler_is_read_from_a_real_trainer(value):
    # Guards the one private Lightning attribute read: fails if Lightning moves it.
    trainer = pl.Trainer(accelerator="cpu", logger=False, use_distributed_sampler=value)
    assert uses_distributed_sampler(trainer) is value
