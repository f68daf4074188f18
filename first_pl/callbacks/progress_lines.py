"""Progress as plain lines, for logs written to a file (no terminal).

A Rich or tqdm bar redraws one line in place; written to a file, Rich renders only when an
epoch ends, so a redirected log of a long stage is silent for minutes. `LineProgress` replaces
the bar when stdout is not a terminal (`first_pl.trainer.Trainer` chooses) and prints, flushed:

    train step 40/120 (33%) | loss 0.8123 | lr 1.97e-05 | 3,412 tok/s | 01:02 elapsed | ETA 02:04
    val step 40/120 | generated: Acc 61.25 ECE 8.40 Trust 52.85 loss 0.9120
    test batch 12/40 (30%) | 00:31 elapsed | ETA 01:12

A training line comes at the first step, then whenever `every_seconds` have passed (or every
`every_steps` steps, if given) and at the last step; its loss is the mean over the batches
since the previous line, its tok/s the rate since then (`TokenThroughput`), and its ETA the
fit's remaining steps at the fit's pace so far (validation included). Each validation prints
one line of Acc / ECE / Trust / loss per task (as `CalibrationEvaluation` logged them), and a
long validation or test a line of its progress every `every_seconds`.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar

from first_pl.callbacks.throughput import TokenThroughput
from first_pl.metrics.bootstrap import FIGURE_LABELS, FIGURES

# What a validation line and a results table show: the figures, then the validation loss.
COLUMNS = (*((key, FIGURE_LABELS[key]) for key in FIGURES), ("loss", "loss"))


def clock(seconds: float) -> str:
    """`mm:ss`, or `h:mm:ss` from an hour on."""
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def task_figures(metrics: Mapping[str, Any], split: str) -> dict[str, dict[str, float]]:
    """`{task: {acc, ece, trust, loss}}` from metrics logged as `<split>/<task>/<figure>`."""
    pattern = re.compile(rf"^{re.escape(split)}/(?P<task>.+)/(?P<key>acc|ece|trust|loss)$")
    tasks: dict[str, dict[str, float]] = {}
    for name, value in metrics.items():
        found = pattern.match(name)
        if found:
            tasks.setdefault(found["task"], {})[found["key"]] = float(value)
    return tasks


def figure(key: str, value: float, width: int = 0) -> str:
    """A loss with 4 decimals, a percentage with 2."""
    return f"{value:>{width}.4f}" if key == "loss" else f"{value:>{width}.2f}"


def figures_text(figures: Mapping[str, float]) -> str:
    """`Acc 61.25 ECE 8.40 Trust 52.85 loss 0.9120` (Acc, ECE and Trust in percent)."""
    return " ".join(f"{label} {figure(key, figures[key])}" for key, label in COLUMNS if key in figures)


def results_table(results: list[Mapping[str, Any]], split: str) -> str:
    """One table, a row per task, of an evaluation's results (Lightning's `test` / `validate`
    return one dict per dataloader, each repeating every task's figures)."""
    merged: dict[str, Any] = {}
    for result in results:
        merged.update(result)
    tasks = task_figures(merged, split)
    if not tasks:
        return ""
    width = max(len("task"), *(len(task) for task in tasks))
    header = f"{'task':<{width}}" + "".join(f"{label:>9}" for _, label in COLUMNS)
    rows = [
        f"{task:<{width}}"
        + "".join(figure(key, figures[key], 9) if key in figures else f"{'-':>9}" for key, _ in COLUMNS)
        for task, figures in tasks.items()
    ]
    title = f"{split} results (Acc, ECE, Trust in %; loss: NLL of the gold option)"
    return "\n".join([title, header, *rows])


class LineProgress(ProgressBar):
    """Plain progress lines instead of a bar (see the module docstring).

    Args:
        every_seconds: print a training (or long evaluation) line at least this often.
        every_steps: also print every this many optimizer steps (0: by time only).
    """

    def __init__(self, every_seconds: float = 30.0, every_steps: int = 0) -> None:
        super().__init__()
        if every_seconds <= 0 or every_steps < 0:
            raise ValueError(
                f"LineProgress: every_seconds must be > 0 and every_steps >= 0, got "
                f"{every_seconds} and {every_steps}"
            )
        self.every_seconds, self.every_steps = every_seconds, every_steps
        self._enabled = True
        self._fit_start = self._last_line = 0.0
        self._first_step = self._last_step = 0
        self._loss_sum: torch.Tensor | float = 0.0
        self._loss_batches = 0
        self._last_tokens = (0, 0.0)
        self._eval_start = self._eval_line = 0.0
        self._eval_done = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _say(self, trainer: pl.Trainer, line: str) -> None:
        if self._enabled and trainer.is_global_zero:
            print(line, flush=True)

    # training -------------------------------------------------------------------------------

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_start = self._last_line = time.monotonic()
        self._first_step = self._last_step = trainer.global_step  # a resumed fit starts later
        throughput = self._throughput(trainer)
        self._last_tokens = (throughput.tokens, throughput.seconds) if throughput else (0, 0.0)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor):
            self._loss_sum = self._loss_sum + loss.detach().float()
            self._loss_batches += 1
        step, total = trainer.global_step, trainer.estimated_stepping_batches
        if step == self._last_step:
            return  # inside an accumulation of gradients: no optimizer step yet
        now = time.monotonic()
        due = (
            step == self._first_step + 1
            or step >= total
            or now - self._last_line >= self.every_seconds
            or (self.every_steps > 0 and step % self.every_steps == 0)
        )
        if due:
            self._say(trainer, self._train_line(trainer, step, total, now))
            self._last_line = now
        self._last_step = step

    def _train_line(self, trainer: pl.Trainer, step: int, total: float, now: float) -> str:
        share = f" ({100 * step / total:.0f}%)" if math.isfinite(total) else ""
        parts = [f"train step {step}/{total}{share}"]
        if self._loss_batches:
            parts.append(f"loss {float(self._loss_sum) / self._loss_batches:.4f}")
            self._loss_sum, self._loss_batches = 0.0, 0
        if trainer.optimizers:
            parts.append(f"lr {trainer.optimizers[0].param_groups[0]['lr']:.3g}")
        throughput = self._throughput(trainer)
        if throughput is not None:
            tokens, seconds = throughput.tokens, throughput.seconds
            if seconds > self._last_tokens[1]:
                rate = (tokens - self._last_tokens[0]) / (seconds - self._last_tokens[1])
                parts.append(f"{rate:,.0f} tok/s")
            self._last_tokens = (tokens, seconds)
        elapsed = now - self._fit_start
        per_step = elapsed / max(1, step - self._first_step)
        parts += [f"{clock(elapsed)} elapsed", f"ETA {clock(per_step * max(0.0, total - step))}"]
        return " | ".join(parts)

    @staticmethod
    def _throughput(trainer: pl.Trainer) -> TokenThroughput | None:
        return next((c for c in trainer.callbacks if isinstance(c, TokenThroughput)), None)

    # evaluation -----------------------------------------------------------------------------

    def _eval_begin(self) -> None:
        self._eval_start = self._eval_line = time.monotonic()
        self._eval_done = 0

    def _eval_batch(self, trainer: pl.Trainer, stage: str, total: float) -> None:
        self._eval_done += 1
        now = time.monotonic()
        if now - self._eval_line < self.every_seconds or self._eval_done >= total:
            return
        elapsed = now - self._eval_start
        left = elapsed / self._eval_done * (total - self._eval_done)
        self._say(trainer, f"{stage} batch {self._eval_done}/{total} ({100 * self._eval_done / total:.0f}%) "
                           f"| {clock(elapsed)} elapsed | ETA {clock(left)}")  # fmt: skip
        self._eval_line = now

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval_begin()

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval_begin()

    def on_validation_batch_end(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if not trainer.sanity_checking:
            self._eval_batch(trainer, "val", sum(trainer.num_val_batches))

    def on_test_batch_end(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        self._eval_batch(trainer, "test", sum(trainer.num_test_batches))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        tasks = task_figures(trainer.callback_metrics, "val")
        if tasks:
            where = "val"
            if trainer.state.fn == "fit":
                where += f" step {trainer.global_step}/{trainer.estimated_stepping_batches}"
            shown = " | ".join(f"{task}: {figures_text(f)}" for task, f in tasks.items())
            self._say(trainer, f"{where} | {shown}")
        self._last_line = time.monotonic()  # the next training line counts from here
