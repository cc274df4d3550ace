"""unpadded_eval_sampler: every evaluation sample on exactly one rank, or Lightning's choice."""

from types import SimpleNamespace

from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler

from autotimm_core.distributed import unpadded_eval_sampler


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
        assert isinstance(sampler, UnrepeatedDistributedSampler)
        seen.append(list(sampler))
    assert seen == [[0, 2, 4], [1, 3]]  # in order, 5 samples, none twice


def test_lightning_keeps_the_choice_where_unpadded_cannot_work():
    data = list(range(5))
    assert unpadded_eval_sampler(None, data) is None  # no trainer attached
    assert unpadded_eval_sampler(_trainer(1), data) is None  # one process
    assert unpadded_eval_sampler(_trainer(8), data) is None  # a rank would get nothing
    assert unpadded_eval_sampler(_trainer(2, use_distributed_sampler=False), data) is None
