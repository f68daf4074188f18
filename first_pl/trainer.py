"""The Trainer that `first-pl fit/test/...` builds: Lightning's, with `precision: auto`."""

from __future__ import annotations

from typing import Literal

import lightning.pytorch as pl
from lightning.pytorch.trainer.connectors.accelerator_connector import _PRECISION_INPUT
from lightning.pytorch.utilities import rank_zero_info

from first_pl.devices import resolve_accelerator
from first_pl.precision import AUTO, resolve_precision


class Trainer(pl.Trainer):
    """`lightning.pytorch.Trainer` whose `precision` also takes `auto` (the CPU presets' default).

    `auto` is resolved once, before Lightning builds its precision plugin, by
    `first_pl.precision.resolve_precision`, and the choice is logged with its reason
    ("precision auto -> 32-true: CPU capability AVX2 has no native bf16"); so is the device
    that `accelerator: auto` picks ("accelerator auto -> gpu (1 CUDA GPU visible)").
    """

    def __init__(
        self, *args, precision: _PRECISION_INPUT | Literal["auto"] | None = AUTO, **kwargs
    ) -> None:
        accelerator = kwargs.get("accelerator", AUTO)
        if isinstance(accelerator, str) and accelerator.lower() == AUTO:
            rank_zero_info(resolve_accelerator(accelerator)[1])
        resolved = resolve_precision(precision, accelerator)
        if str(precision) == AUTO:
            rank_zero_info(resolved.reason)
        super().__init__(*args, precision=resolved.precision, **kwargs)
