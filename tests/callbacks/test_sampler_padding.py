"""The repeats a DistributedSampler pads an uneven evaluation set with are marked, rank by rank."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from first_pl.callbacks.sampler_padding import SamplerPadding, select


def loader(size: int, rank: int, world: int = 2, **kwargs) -> DataLoader:
    sampler = DistributedSampler(range(size), num_replicas=world, rank=rank, shuffle=False, **kwargs)
    return DataLoader(range(size), sampler=sampler, batch_size=2)


@pytest.mark.parametrize("size,world", [(5, 2), (7, 3), (10, 4), (1, 3)])
def test_every_example_is_kept_exactly_once_over_the_ranks(size, world):
    kept = []
    for rank in range(world):
        padding, data = SamplerPadding(), loader(size, rank, world)
        for batch in data:
            keep = padding.keep(data, 0, len(batch))
            kept += [int(i) for i, k in zip(batch, keep, strict=True) if k]
    assert sorted(kept) == list(range(size))


def test_nothing_is_marked_for_an_even_split_drop_last_or_one_process():
    padding = SamplerPadding()
    assert padding.keep(loader(6, 1), 0, 2) is None
    assert padding.keep(loader(5, 1, drop_last=True), 0, 2) is None
    assert padding.keep(DataLoader(range(5), batch_size=2), 0, 2) is None


def test_reset_starts_each_rank_again_at_its_first_example():
    padding, data = SamplerPadding(), loader(5, 1)  # rank 1 sees 1, 3 and the repeat of 0
    assert padding.keep(data, 0, 3).tolist() == [True, True, False]
    padding.reset()
    assert padding.keep(data, 0, 3).tolist() == [True, True, False]


def test_select_indexes_per_example_tensors_and_lists_and_keeps_the_rest():
    outputs = {"pred": torch.tensor([1, 2, 3]), "example_id": ["a", "b", "c"], "scoring": "letter",
               "probs": torch.ones(3, 4)}  # fmt: skip
    chosen = select(outputs, torch.tensor([True, False, True]))
    assert chosen["pred"].tolist() == [1, 3] and chosen["example_id"] == ["a", "c"]
    assert chosen["scoring"] == "letter" and chosen["probs"].shape == (2, 4)
