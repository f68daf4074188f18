"""Training-step figures: a FIRST step against a FineTune step on the same student.

One student model and one Adam (`Workbench.students`) serve both steps, which run interleaved
on the same DistillDataModule batches:

- finetune: `FineTune.loss` (hard-label CE) on `MethodModule.response_logits`;
- first: `FIRST.loss` (temperature-scaled stored top-k, sparse KL) on the same logits.

Each step is forward, loss, backward and optimiser step, as Lightning's automatic optimisation
does; the Trainer's own per-step overhead (logging, the LR schedule) is left out of both.
`online_kd_step` (what FIRST replaces: the teacher's forward at the response positions every
step, then the full-vocabulary KL) is timed against FIRST over whole epochs, extraction
included, in `fig_offline_online`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import Goal, Row, interleaved_seconds
from benchmarks.workbench import Workbench
from first_pl.lm_head import logits_at
from first_pl.methods.base import MethodModule

Batch = dict[str, Any]


def method_step(module: MethodModule, optimizer: torch.optim.Optimizer, batch: Batch) -> None:
    """One optimisation step of a first_pl strategy (its `training_step` minus logging)."""
    optimizer.zero_grad(set_to_none=True)
    logits, targets, mask = module.response_logits(batch)
    module.loss(logits, targets, batch, mask).backward()
    optimizer.step()


def online_kd_step(
    student: MethodModule, teacher: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Batch
) -> None:
    """One step of classic online distillation: teacher forward now, full-vocab KL."""
    optimizer.zero_grad(set_to_none=True)
    logits, _, mask = student.response_logits(batch)
    with torch.inference_mode():
        target = logits_at(teacher, batch["input_ids"], batch["attention_mask"], mask)
    loss = F.kl_div(
        logits.float().log_softmax(-1),
        target.float().log_softmax(-1),
        log_target=True,
        reduction="batchmean",
    )
    loss.backward()
    optimizer.step()


def _cycling(step: Callable[[Batch], None], batches: list[Batch]) -> Callable[[], None]:
    """A no-argument callable that steps on the next batch of a fixed cycle."""
    cycle = itertools.cycle(batches)
    return lambda: step(next(cycle))


def train_rows(bench: Workbench) -> list[Row]:
    s = bench.settings
    finetune, first, optimizer = bench.students
    batches = list(itertools.islice(bench.distill_data.train_dataloader(), 4))
    t = interleaved_seconds(
        {
            "finetune": _cycling(lambda b: method_step(finetune, optimizer, b), batches),
            "first": _cycling(lambda b: method_step(first, optimizer, b), batches),
        },
        s.repeats,
    )
    bench.timings["first_step"] = t["first"]
    layers = finetune.model.config.num_hidden_layers
    return [
        Row(
            "FIRST training step / FineTune step (same student)",
            t["first"] / t["finetune"],
            goal=Goal("<=", 1.05),
            detail=(
                f"{t['first']:.2f} s vs {t['finetune']:.2f} s; {layers}-layer student, "
                f"batch {s.batch_size}, {s.repeats} repeats"
            ),
        ),
    ]
