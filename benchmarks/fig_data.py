"""Data-loading figure: DistillDataModule batches/s against the student's steps/s.

The loader is the library's (`train_dataloader`, HDF5 store read per batch, not in memory,
no workers) over the whole train split; one epoch per timed call. The student step time is the
FIRST step measured by `fig_train` when it ran first, else measured here.
"""

from __future__ import annotations

import itertools

from benchmarks.common import Goal, Row, median_seconds
from benchmarks.fig_train import method_step
from benchmarks.workbench import Workbench


def data_rows(bench: Workbench) -> list[Row]:
    s = bench.settings
    data = bench.distill_data
    loader = data.train_dataloader()
    n_batches = len(loader)
    epoch = median_seconds(lambda: sum(1 for _ in data.train_dataloader()), s.repeats)
    step = bench.timings.get("first_step")
    if step is None:
        _, first, optimizer = bench.students
        cycle = itertools.cycle(itertools.islice(loader, 2))
        step = median_seconds(lambda: method_step(first, optimizer, next(cycle)), s.repeats)
    batches_per_s = n_batches / epoch
    return [
        Row(
            "DistillDataModule batches/s / student steps/s",
            batches_per_s * step,
            goal=Goal(">=", 20),
            detail=f"{batches_per_s:.0f} batches/s ({n_batches} per epoch) vs {1 / step:.2f} steps/s",
        )
    ]
