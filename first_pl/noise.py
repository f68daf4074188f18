"""Known third-party messages that say nothing about a run, hidden unless `first-pl --verbose`.

Each is matched by its own text, so every other warning and log line still shows:

- Lightning's "💡 Tip: ... litmodels / litlogger" advertisements, which every Trainer logs
  through `rank_zero_info` (the `lightning.*.utilities.rank_zero` loggers): two per fit or test;
- torch's FutureWarning "`isinstance(treespec, LeafSpec)` is deprecated", raised whenever
  Lightning's `utilities._pytree` builds a `LeafSpec`;
- W&B's run history and summary printed when a run finishes: `OfflineAwareWandbLogger` and the
  report's run pass W&B's own `quiet` setting (`wandb_settings`), which keeps its warnings,
  errors and the `wandb sync` hint.

`first-pl --verbose <command>` sets `FIRST_PL_VERBOSE=1`, which the pipeline's torchrun ranks
inherit, and shows them all.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from typing import Any

VERBOSE_ENV = "FIRST_PL_VERBOSE"
RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
LIGHTNING_TIP = re.compile(r"^💡 Tip: .*\b(litmodels|litlogger)\b")
LEAFSPEC_WARNING = r"`isinstance\(treespec, LeafSpec\)` is deprecated"


def verbose() -> bool:
    """Whether third-party noise is shown (`first-pl --verbose`, or FIRST_PL_VERBOSE=1)."""
    return os.environ.get(VERBOSE_ENV, "").lower() not in ("", "0", "false", "no")


class _LightningTips(logging.Filter):
    """Drops Lightning's advertisement tips, and nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not LIGHTNING_TIP.search(record.getMessage())


_TIPS = _LightningTips()


def configure_third_party_noise() -> None:
    """Hide the known noise (module docstring) in this process, or show it under --verbose."""
    for name in RANK_ZERO_LOGGERS:
        logging.getLogger(name).removeFilter(_TIPS)
        if not verbose():
            logging.getLogger(name).addFilter(_TIPS)
    if not verbose():
        warnings.filterwarnings("ignore", message=LEAFSPEC_WARNING, category=FutureWarning)


def wandb_settings(settings: Any = None) -> Any:
    """`wandb.init`'s `settings` with W&B's `quiet` on unless --verbose (a `wandb.Settings`
    object given by the user is left as it is)."""
    if settings is not None and not isinstance(settings, dict):
        return settings
    return {"quiet": not verbose(), **(settings or {})}
