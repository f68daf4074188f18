"""The Trainer that `first-pl fit/test/...` builds: Lightning's, with `precision: auto`, log
lines when no terminal shows a progress bar, learning rate and tokens/s for every logger, and
one results table per evaluation."""

from __future__ import annotations

import sys
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.fabric.plugins import CheckpointIO
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ProgressBar
from lightning.pytorch.trainer.connectors.accelerator_connector import _PRECISION_INPUT
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.types import _EVALUATE_OUTPUT

from first_pl.callbacks.progress_lines import LineProgress, results_table
from first_pl.callbacks.throughput import TokenThroughput
from first_pl.devices import resolve_accelerator
from first_pl.fileio.checkpoint_io import DirectCheckpointIO
from first_pl.precision import AUTO, resolve_precision


def default_callbacks(
    callbacks: list[Callback] | Callback | None,
    progress_bar: bool,
    has_logger: bool,
    terminal: bool,
) -> list[Callback]:
    """`callbacks` plus what every first_pl run logs, each only where the config has none:
    `LineProgress` instead of Lightning's bar when stdout is no terminal (a Rich bar written to
    a file renders only at epoch ends), `TokenThroughput`, and `LearningRateMonitor` when
    there is a logger to receive the rate (Lightning refuses one without)."""
    chosen = [callbacks] if isinstance(callbacks, Callback) else list(callbacks or [])

    def missing(kind: type) -> bool:
        return not any(isinstance(c, kind) for c in chosen)

    if progress_bar and not terminal and missing(ProgressBar):
        chosen.append(LineProgress())
    if missing(TokenThroughput):  # first: its totals are updated before LineProgress reads them
        chosen.insert(0, TokenThroughput())
    if has_logger and missing(LearningRateMonitor):
        chosen.append(LearningRateMonitor(logging_interval="step"))
    return chosen


def with_direct_checkpoint_io(plugins: Any) -> list[Any]:
    """`plugins` plus `DirectCheckpointIO` where they choose no checkpoint IO of their own: a
    checkpoint is then written without Lightning's in-memory copy of it."""
    chosen = list(plugins) if isinstance(plugins, (list, tuple)) else [] if plugins is None else [plugins]
    if not any(isinstance(p, CheckpointIO) for p in chosen):
        chosen.append(DirectCheckpointIO())
    return chosen


class Trainer(pl.Trainer):
    """`lightning.pytorch.Trainer` whose `precision` also takes `auto` (the CPU presets' default).

    `auto` is resolved once, before Lightning builds its precision plugin, by
    `first_pl.precision.resolve_precision`, and the choice is logged with its reason
    ("precision auto -> 32-true: CPU capability AVX2 has no native bf16"); so is the device
    that `accelerator: auto` picks ("accelerator auto -> gpu (1 CUDA GPU visible)"). Callbacks
    are completed by `default_callbacks`; `test` and `validate` print one table with a row per
    task instead of Lightning's table per dataloader; checkpoints are written by
    `DirectCheckpointIO` unless the config chooses another checkpoint IO.
    """

    def __init__(
        self, *args, precision: _PRECISION_INPUT | Literal["auto"] | None = AUTO, **kwargs
    ) -> None:
        accelerator = kwargs.get("accelerator", AUTO)
        if isinstance(accelerator, str) and accelerator.lower() == AUTO:
            rank_zero_info(resolve_accelerator(accelerator)[1])
        check_budget(kwargs)
        resolved = resolve_precision(precision, accelerator)
        if str(precision) == AUTO:
            rank_zero_info(resolved.reason)
        kwargs["plugins"] = with_direct_checkpoint_io(kwargs.get("plugins"))
        kwargs["callbacks"] = default_callbacks(
            kwargs.get("callbacks"),
            progress_bar=kwargs.get("enable_progress_bar") is not False,
            has_logger=kwargs.get("logger") not in (False, []),
            terminal=sys.stdout.isatty(),
        )
        super().__init__(*args, precision=resolved.precision, **kwargs)

    def validate(
        self,
        model: pl.LightningModule | None = None,
        dataloaders=None,
        ckpt_path: _PATH | None = None,
        verbose: bool = False,
        datamodule: pl.LightningDataModule | None = None,
        weights_only: bool | None = None,
    ) -> _EVALUATE_OUTPUT:
        """Lightning's `validate`, its results printed as one table by task (`verbose`:
        Lightning's own table per dataloader as well)."""
        results = super().validate(model, dataloaders, ckpt_path, verbose, datamodule, weights_only)
        self._print_table(results, "val")
        return results

    def test(
        self,
        model: pl.LightningModule | None = None,
        dataloaders=None,
        ckpt_path: _PATH | None = None,
        verbose: bool = False,
        datamodule: pl.LightningDataModule | None = None,
        weights_only: bool | None = None,
    ) -> _EVALUATE_OUTPUT:
        """Lightning's `test`, its results printed as one table by task (`verbose`: Lightning's
        own table per dataloader as well)."""
        results = super().test(model, dataloaders, ckpt_path, verbose, datamodule, weights_only)
        self._print_table(results, "test")
        return results

    def _print_table(self, results: _EVALUATE_OUTPUT, split: str) -> None:
        table = results_table(list(results), split)
        if table and self.is_global_zero:
            print(table, flush=True)


def check_budget(options: dict) -> None:
    """Refuse a negative training budget by its option name (Lightning's own check is a
    traceback): -1 is Lightning's "no limit" (`max_steps`: `max_epochs` decides; `max_epochs`:
    train until `max_steps`), any other negative value is a mistake."""
    for option in ("max_steps", "max_epochs"):
        value = options.get(option)
        if value is not None and value < -1:
            raise ValueError(
                f"trainer.{option} must be >= 0, or -1 for no limit, got {value}"
            )
