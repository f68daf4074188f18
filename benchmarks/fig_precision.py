"""bf16 autocast against float32 on this machine: what `precision: auto` decides between.

Two ratios, measured side by side (interleaved medians): one matmul of the SmolLM2 MLP shape
(2048 x 576 @ 576 x 1536, the figure DESIGN.md quotes: 8x slower in bf16 on an AVX2-only CPU),
and one FineTune training step of the benchmark student (forward, loss, backward, Adam) under
`torch.autocast("cpu", torch.bfloat16)` against the same step in float32. The detail names the
CPU capability and what `precision: auto` resolves to here, so a row is read with its machine.
"""

from __future__ import annotations

import itertools

import torch

from benchmarks.common import Goal, Row, interleaved_seconds
from benchmarks.fig_train import method_step
from benchmarks.workbench import Workbench
from first_pl.precision import resolve_precision


def _autocast(enabled: bool) -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


def precision_rows(bench: Workbench) -> list[Row]:
    s = bench.settings
    auto = resolve_precision("auto", "cpu")
    a, b = torch.randn(2048, 576), torch.randn(576, 1536)
    a16, b16 = a.bfloat16(), b.bfloat16()
    mm = interleaved_seconds({"bf16": lambda: a16 @ b16, "fp32": lambda: a @ b}, s.repeats * 4)
    finetune, _, optimizer = bench.students
    cycle = itertools.cycle(list(itertools.islice(bench.distill_data.train_dataloader(), 2)))

    def step(bf16: bool) -> None:
        with _autocast(bf16):
            method_step(finetune, optimizer, next(cycle))

    t = interleaved_seconds({"bf16": lambda: step(True), "fp32": lambda: step(False)}, s.repeats)
    where = f"{auto.reason.split(': ', 1)[1]}; precision auto -> {auto.precision} here"
    layers = finetune.model.config.num_hidden_layers
    return [
        Row(
            "bf16 / float32 matmul time (2048x576 @ 576x1536, this CPU)",
            mm["bf16"] / mm["fp32"],
            goal=Goal("report"),
            detail=f"{mm['bf16'] * 1e3:.1f} ms vs {mm['fp32'] * 1e3:.1f} ms; {where}",
        ),
        Row(
            "bf16-mixed / float32 training step time (this CPU)",
            t["bf16"] / t["fp32"],
            goal=Goal("report"),
            detail=(
                f"{t['bf16']:.2f} s vs {t['fp32']:.2f} s; {layers}-layer student, batch "
                f"{s.batch_size}; {where}"
            ),
        ),
    ]
