"""The Trainer that `first-pl fit/test/...` builds: Lightning's, with `precision: auto`."""

from __future__ import annotations

from typing import Literal

import lightning.pytorch as pl
from lightning.pytorch.trainer.connectors.accelerator_connector import _PRECISION_INPUT
from lightning.pytorch.utilities import rank_zero_info

from first_pl.precision import AUTO, resolve_precision


class Trainer(pl.Trainer):
    """`lightning.pytorch.Trainer` whose `precision` also takes `auto` (the CPU presets' default).

    `auto` is resolved once, before Lightning builds its precision plugin, by
    `first_pl.precision.resolve_precision`, and the choice is logged with its reason
    ("precision auto -> 32-true: CPU capability AVX2 has no native bf16").
    """

    def __init__(
        self, *args, precision: _PRECISION_INPUT | Literal["auto"] | None = AUTO, **kwargs
    ) -> None:
        check_budget(kwargs)
        resolved = resolve_precision(precision, kwargs.get("accelerator", AUTO))
        if str(precision) == AUTO:
            rank_zero_info(resolved.reason)
        super().__init__(*args, precision=resolved.precision, **kwargs)


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
