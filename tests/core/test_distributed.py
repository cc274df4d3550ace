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


# ----------------------------------------------------------------------------- weighted draws
def test_weighted_sampler_ranks_share_one_draw():
    from autotimm_core.distributed import WeightedDistributedSampler

    weights = [1.0, 0.0, 3.0, 0.5, 2.0]
    alone = WeightedDistributedSampler(weights, num_samples=10, seed=7)
    shares = [
        list(WeightedDistributedSampler(weights, num_samples=10, num_replicas=2, rank=r, seed=7))
        for r in range(2)
    ]
    draw = list(alone)
    # Rank r holds draw[r::2]: together one weighted sample, none drawn twice by accident.
    assert shares == [draw[0::2], draw[1::2]]
    assert 1 not in draw  # weight 0 is never drawn
    # A count that does not divide by the ranks is rounded up: every rank runs as many steps.
    odd = [WeightedDistributedSampler(weights, 5, num_replicas=2, rank=r) for r in range(2)]
    assert [len(s) for s in odd] == [3, 3] and [len(list(s)) for s in odd] == [3, 3]


def test_weighted_sampler_follows_weights_and_epoch():
    from autotimm_core.distributed import WeightedDistributedSampler

    sampler = WeightedDistributedSampler([1.0, 3.0], num_samples=4000, seed=0)
    first = list(sampler)
    assert sum(first) / len(first) == pytest.approx(0.75, abs=0.03)
    assert list(sampler) == first  # same epoch, same draw
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert isinstance(sampler, DistributedSampler)  # Lightning leaves it in place under DDP


@pytest.mark.parametrize(
    ("weights", "message"),
    [([], "at least one"), ([1.0, -1.0], ">= 0"), ([0.0, 0.0], "all zero")],
)
def test_weighted_sampler_rejects_bad_weights(weights, message):
    from autotimm_core.distributed import WeightedDistributedSampler

    with pytest.raises(ValueError, match=message):
        WeightedDistributedSampler(weights)
