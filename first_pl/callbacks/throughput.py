"""Training throughput in tokens per second, for every logger and for the log lines.

Tokens are the batch's real tokens (`attention_mask` ones, padding excluded), so the figure
compares runs that pad differently (length-grouped batches against pad-to-longest). Time is
wall time between consecutive training batches, data loading included and validation
excluded. Each process counts its own batches; the logged rate is rank 0's times the number
of processes (ranks of one data-parallel run see batches of the same size on average).
The counts stay on the batch's device until a figure is needed, so a GPU is not synchronised
every step for them.
"""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

METRIC = "train/tokens_per_s"


class TokenThroughput(Callback):
    """Logs `train/tokens_per_s` when the trainer logs (every `log_every_n_steps`), to every
    logger, and keeps running totals that `LineProgress` reads (`tokens`, `seconds`)."""

    def __init__(self) -> None:
        self._pending: torch.Tensor | int = 0  # tokens of batches not yet added to `_tokens`
        self._tokens = 0
        self.seconds = 0.0
        self._last: float | None = None
        self._logged = (0, 0.0)  # (tokens, seconds) at the last logged figure

    @property
    def tokens(self) -> int:
        """Tokens trained on by every process so far (see the module docstring)."""
        if isinstance(self._pending, torch.Tensor):
            self._tokens += int(self._pending)
            self._pending = 0
        return self._tokens

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._last is None:  # the first batch, or the first after a validation
            self._last = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        now = time.perf_counter()
        self.seconds += now - (self._last if self._last is not None else now)
        self._last = now
        mask = batch.get("attention_mask") if isinstance(batch, dict) else None
        if mask is not None:
            self._pending = self._pending + mask.sum() * trainer.world_size
        if trainer.loggers and trainer._logger_connector.should_update_logs:
            tokens, seconds = self.tokens, self.seconds
            before = self._logged
            self._logged = (tokens, seconds)
            if seconds > before[1]:
                rate = (tokens - before[0]) / (seconds - before[1])
                # the step LearningRateMonitor and the logger connector use, so rows line up
                step = trainer.fit_loop.epoch_loop._batches_that_stepped
                for logger in trainer.loggers:
                    logger.log_metrics({METRIC: rate}, step=step)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = None  # validation time is not training time
