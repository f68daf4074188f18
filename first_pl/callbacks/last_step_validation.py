"""Validate at the last training step too, so a learning curve ends at the model that is tested.

Lightning validates at multiples of `val_check_interval` only: with 60 steps and an interval
of 20 the last point is step 60, but with 50 steps it would be step 40, and a convergence
verdict would judge a model ten steps older than the checkpoint that `test` evaluates.
Setting `trainer.should_stop` at `max_steps` is how Lightning's own early stopping asks for
that final validation (`_should_check_val_fx` validates when the trainer is stopping); at a
step that is also a multiple of the interval it still validates once.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback


class LastStepValidation(Callback):
    """Ask for a validation after the optimizer step that reaches `trainer.max_steps`."""

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True
