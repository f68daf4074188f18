"""Where a pipeline stage logs: its CSV files always, and W&B with `logger: wandb`.

The CSV logger stays first, so the trainer's log folder (the stage folder, `test/` for the test)
and every file the report reads are the same with and without W&B. With W&B each fit and each
test of a stage is a run named after the stage (`teacher`, `teacher-test`), all runs of one
output folder share a group (the experiment), and `job_type` tells fit from test; training and
validation curves, per-task Acc / ECE / Trust, reliability diagrams, bins and prediction tables
reach it through the trainer's loggers (CalibrationEvaluation). Offline without credentials
(OfflineAwareWandbLogger says so in one line); `wandb sync <stage>/wandb/offline-run-*` uploads.
The logger is not part of a stage's key: how a stage logs does not change what it computes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LOGGERS = ("csv", "wandb")
WANDB_LOGGER = "first_pl.callbacks.wandb_logging.OfflineAwareWandbLogger"


def check_logger(logger: str) -> None:
    if logger not in LOGGERS:
        raise ValueError(f"pipeline logger must be one of {list(LOGGERS)}, got {logger!r}")


def stage_loggers(logger: str, folder: Path, version: str, group: str, job: str) -> dict[str, Any]:
    """The `trainer.logger` override of a stage's fit (`version` "") or test (`version` "test")."""
    csv = {
        "class_path": "lightning.pytorch.loggers.CSVLogger",
        "init_args": {"save_dir": str(folder), "name": "", "version": version},
    }
    if logger == "csv":
        return {"trainer": {"logger": csv}}
    name = folder.name.rsplit("-", 1)[0] + (f"-{version}" if version else "")
    wandb = {
        "class_path": WANDB_LOGGER,
        "init_args": {
            "save_dir": str(folder / version) if version else str(folder),
            "project": "first-pl",
            "name": name,
            "group": group,
            "job_type": job,
            "log_model": False,
        },
    }
    return {"trainer": {"logger": [csv, wandb]}}


def finish_wandb_run() -> None:
    """End the W&B run a stage command started in this process: Lightning's WandbLogger leaves
    it open, and the next stage's logger would otherwise reuse it instead of starting its own."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()
