"""Length-grouped training batches: each example once per epoch, in batches of similar length,
the same order for the same seed and epoch, less padding than shuffled batches, and refused on
more than one process."""

from __future__ import annotations

import random
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch

from first_pl.data.bucketing import LengthGroupedSampler, padding_share
from first_pl.data.qa_datamodule import QADataModule
from first_pl.methods import FineTune
from first_pl.models import ModelSpec
from first_pl.tasks import GeneratedMC


def chunks(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def test_one_window_sorts_by_length_without_shuffling():
    lengths = [5, 9, 1, 7, 3, 8, 2]
    sampler = LengthGroupedSampler(lengths, batch_size=3, window_batches=10, shuffle=False)
    # longest first: 9 8 7 | 5 3 2 | 1, the short batch last
    assert sampler.batches() == [[1, 5, 3], [0, 4, 6], [2]]
    assert list(sampler) == [1, 5, 3, 0, 4, 6, 2]


def test_windows_group_within_themselves_only():
    lengths = [1, 2, 3, 4, 40, 30, 20, 10]
    sampler = LengthGroupedSampler(lengths, batch_size=2, window_batches=2, shuffle=False)
    # windows of 4 examples in the data's order, each sorted longest first
    assert sampler.batches() == [[3, 2], [1, 0], [4, 5], [6, 7]]


def test_each_example_once_in_full_batches_that_a_dataloader_cuts_alike():
    rng = random.Random(0)
    lengths = [rng.randint(5, 60) for _ in range(203)]
    sampler = LengthGroupedSampler(lengths, batch_size=8, window_batches=4, seed=3)
    batches = sampler.batches()
    assert sorted(i for batch in batches for i in batch) == list(range(203))
    assert [len(b) for b in batches] == [8] * 25 + [3]  # the short batch is the last
    assert chunks(list(sampler), 8) == batches  # what DataLoader(batch_size=8) makes of it
    loader = torch.utils.data.DataLoader(list(range(203)), batch_size=8, sampler=sampler)
    assert [batch.tolist() for batch in loader] == batches


def test_same_seed_and_epoch_same_order_and_each_epoch_another():
    lengths = [random.Random(1).randint(5, 60) for _ in range(100)]
    first = LengthGroupedSampler(lengths, 4, 5, seed=7)
    again = LengthGroupedSampler(lengths, 4, 5, seed=7)
    assert first.batches() == again.batches()
    epoch0 = first.batches()
    first.set_epoch(1)
    assert first.batches() != epoch0
    again.set_epoch(1)
    assert first.batches() == again.batches()
    assert LengthGroupedSampler(lengths, 4, 5, seed=8).batches() != epoch0


def test_grouped_batches_pad_less_than_shuffled_ones():
    rng = random.Random(2)
    lengths = [rng.randint(10, 100) for _ in range(640)]
    order = list(range(640))
    rng.shuffle(order)
    grouped = padding_share(lengths, LengthGroupedSampler(lengths, 16, 50).batches())
    shuffled = padding_share(lengths, chunks(order, 16))
    assert grouped < 0.02 < 0.3 < shuffled


def test_padding_share_is_the_share_of_pad_positions():
    assert padding_share([2, 4, 4], [[0, 1], [2]]) == pytest.approx(1 - 10 / 12)


def test_bad_window_is_refused_by_name():
    with pytest.raises(ValueError, match=r"data\.bucket_window must be >= 1, got 0"):
        QADataModule(bucket_window=0)


def datamodule(model_dir, **options) -> QADataModule:
    task = GeneratedMC(train_size=96, validation_size=8, test_size=8)
    return QADataModule(tokenizer=str(model_dir), train_task=task, batch_size=8, **options)


def test_the_datamodule_serves_grouped_batches_with_less_padding(tiny_model_dir):
    torch.manual_seed(0)
    plain = datamodule(tiny_model_dir)
    grouped = datamodule(tiny_model_dir, bucket_by_length=True)

    def pad_share(loader) -> float:
        """The share of padding among the positions of one epoch's batches, as collated."""
        mask = torch.cat([batch["attention_mask"].flatten() for batch in loader])
        return 1 - mask.float().mean().item()

    loader = grouped.train_dataloader()
    plain_share, grouped_share = pad_share(plain.train_dataloader()), pad_share(loader)
    assert grouped_share < plain_share / 2, (grouped_share, plain_share)
    lengths = [len(ex.input_ids) for ex in grouped.train_items()]
    assert sorted(loader.sampler) == list(range(96))
    assert padding_share(lengths, loader.sampler.batches()) == pytest.approx(grouped_share)


def test_more_than_one_process_is_refused(tiny_model_dir):
    data = datamodule(tiny_model_dir, bucket_by_length=True)
    data.trainer = SimpleNamespace(world_size=2)
    with pytest.raises(ValueError, match=r"data\.bucket_by_length groups batches in one process, "
                       r"but the trainer runs 2; a distributed sampler would replace the grouping"):  # fmt: skip
        data.train_dataloader()


class EpochOrder(pl.Callback):
    """The sampler's epoch and first batch's example ids, as each training epoch starts."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, list[int]]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        sampler = trainer.train_dataloader.sampler
        self.seen.append((sampler.epoch, sampler.batches()[0]))


def test_lightning_sets_the_epoch_so_each_epoch_has_its_own_order(tiny_model_dir, tmp_path):
    pl.seed_everything(0)
    order = EpochOrder()
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[order], default_root_dir=tmp_path)  # fmt: skip
    module = FineTune(model=ModelSpec(name_or_path=str(tiny_model_dir)))
    trainer.fit(module, datamodule=datamodule(tiny_model_dir, bucket_by_length=True))
    (epoch0, first0), (epoch1, first1) = order.seen
    assert (epoch0, epoch1) == (0, 1) and first0 != first1
