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

import os
import re
import sys
from pathlib import Path
from typing import Any

from first_pl.report.blocks import Figures, Heading, Report, Table
from first_pl.report.render import to_html

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
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


def report_tables(report: Report) -> dict[str, Table]:
    """The report's tables by the heading above them (`test_results`), in order; a second table
    under one heading gets `-2`, and so on."""
    tables: dict[str, Table] = {}
    heading, under = report.title, 0
    for block in report.blocks:
        if isinstance(block, Heading):
            heading, under = block.text, 0
        elif isinstance(block, Table):
            name, under = re.sub(r"[^a-z0-9]+", "_", heading.lower()).strip("_"), under + 1
            tables[name if under == 1 else f"{name}-{under}"] = block
    return tables


def log_report_run(report: Report, figures: list[Path], group: str) -> None:
    """The report as a W&B run of its own (job type `report`) in the experiment's group: its
    tables (`report/<heading>`), its figures and the given ones (such as the calibration curve,
    the paper's figure 5 left) as images, and the whole report as HTML."""
    import wandb

    from first_pl.callbacks.wandb_logging import wandb_has_credentials
    from first_pl.noise import wandb_settings

    mode = None if "WANDB_MODE" in os.environ or wandb_has_credentials() else "offline"
    if mode == "offline":
        print(
            "W&B: no WANDB_API_KEY, netrc entry or WANDB_MODE; logging offline (`wandb sync` later).",
            flush=True,
        )
    run = wandb.init(
        project="first-pl", group=group, name="report", job_type="report",
        dir=str(report.folder), mode=mode, reinit="finish_previous", settings=wandb_settings(),
    )  # fmt: skip
    media: dict[str, Any] = {
        f"report/{name}": wandb.Table(columns=table.columns, data=table.rows)
        for name, table in report_tables(report).items()
    }
    shown = [path for block in report.blocks if isinstance(block, Figures) for path in block.paths]
    for figure in [*shown, *figures]:
        media[f"figures/{figure.stem}"] = wandb.Image(str(figure), caption=figure.stem)
    media["report/html"] = wandb.Html(to_html(report))
    run.log(media)
    run.finish()
