"""Sequence bucketing figure: a training epoch on length-grouped batches against pad-to-longest.

Two QADataModules over the same examples (the generated task with `bucket_batches` batches of
training data, so that an epoch is affordable) serve one epoch each: one shuffled
(`train_dataloader` as the offline default runs it), one with `bucket_by_length` and a window
covering the whole epoch. Their batches are collated once; each timed call is the epoch's
FineTune steps on the same student (`fig_train.method_step`), the two interleaved. The
padding share of both, and of the whole benchmark train split with the default window of 50
batches, go into the row's detail.
"""

from __future__ import annotations

import random

from benchmarks.common import Goal, Row, interleaved_seconds
from benchmarks.fig_train import method_step
from benchmarks.workbench import Workbench
from first_pl.data.bucketing import LengthGroupedSampler, padding_share
from first_pl.data.qa_datamodule import QADataModule
from first_pl.tasks import GeneratedMC


def shuffled_batches(n: int, size: int, seed: int = 0) -> list[list[int]]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [order[i : i + size] for i in range(0, n, size)]


def bucketing_rows(bench: Workbench) -> list[Row]:
    s = bench.settings
    n = s.bucket_batches * s.batch_size
    task = GeneratedMC(train_size=n, validation_size=16, test_size=16, label_noise=s.label_noise)
    kwargs = {**bench.data_kwargs(), "train_task": task, "shuffle": True}
    plain = QADataModule(**kwargs)
    grouped = QADataModule(**kwargs, bucket_by_length=True, bucket_window=s.bucket_batches)
    epochs = {"pad-to-longest": list(plain.train_dataloader()),
              "length-grouped": list(grouped.train_dataloader())}  # fmt: skip
    finetune, _, optimizer = bench.students

    def epoch(batches: list) -> None:
        for batch in batches:
            method_step(finetune, optimizer, batch)

    seconds = interleaved_seconds({name: (lambda b=b: epoch(b)) for name, b in epochs.items()},
                                  s.repeats)  # fmt: skip
    share = {
        name: 1 - sum(int(b["attention_mask"].sum()) for b in batches)
        / sum(b["attention_mask"].numel() for b in batches)
        for name, batches in epochs.items()
    }
    lengths = [len(ex.input_ids) for ex in bench.examples]
    split_plain = padding_share(lengths, shuffled_batches(len(lengths), s.batch_size))
    split_grouped = padding_share(lengths, LengthGroupedSampler(lengths, s.batch_size).batches())
    return [
        Row(
            "pad-to-longest epoch / length-grouped epoch (data.bucket_by_length)",
            seconds["pad-to-longest"] / seconds["length-grouped"],
            goal=Goal(">=", 1.0),
            detail=(
                f"{seconds['pad-to-longest']:.2f} s vs {seconds['length-grouped']:.2f} s for "
                f"{len(epochs['pad-to-longest'])} FineTune steps of {s.batch_size}; padding "
                f"{share['pad-to-longest']:.0%} vs {share['length-grouped']:.0%} of positions "
                f"(the {len(lengths)}-example train split, 50-batch windows: {split_plain:.0%} "
                f"vs {split_grouped:.0%})"
            ),
        )
    ]
