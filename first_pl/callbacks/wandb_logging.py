"""Weights & Biases extras: an offline-aware WandbLogger and calibration media for a run.

W&B is optional at every step: without an API key the logger runs offline (sync later with
`wandb sync`), so a laptop or a cluster node with no network never waits on wandb.ai.
"""

from __future__ import annotations

import hashlib
import json
import netrc
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import lightning.pytorch as pl
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from first_pl.noise import wandb_settings


def wandb_has_credentials() -> bool:
    """True when `WANDB_API_KEY` is set or the netrc file has an entry for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return path.is_file() and netrc.netrc(path).authenticators(host or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def stable_run_id(save_dir: str | Path, name: str | None, job_type: str | None) -> str:
    """A W&B run id that is the same every time a run writes to the same place: its name, then
    a hash of the absolute `save_dir`, the name and the job type (so two output folders with the
    same stage names, or the fit and the test of one stage, get different runs)."""
    place = json.dumps([str(Path(save_dir).resolve()), name, job_type])
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", name or "run").strip("-")[:48] or "run"
    return f"{readable}-{hashlib.sha256(place.encode()).hexdigest()[:12]}"


@rank_zero_only
def _say(message: str) -> None:
    print(message, file=sys.stderr)


class OfflineAwareWandbLogger(WandbLogger):
    """`WandbLogger` that goes offline when it has no credentials, and names runs by
    method, task and seed.

    Offline is chosen (with one line on stderr) when `WANDB_API_KEY` is unset, the netrc file
    has no W&B entry and `WANDB_MODE` is unset; an explicit `WANDB_MODE` or `offline=True`
    is always respected. The run name defaults to `{method}-{task}-seed{seed}`, the group to
    `{method}-{task}` (so seeds of one setting group together) and the three become tags.

    The run id defaults to `stable_run_id(save_dir, name, job_type)` with `resume="allow"`, so a
    fit resumed into the same run folder continues its W&B run instead of starting another (a
    fit restarted from step 0 there appends to it too: its `trainer/global_step` starts again).
    W&B's history and summary at the end of a run are hidden unless `first-pl --verbose`
    (`first_pl.noise`).
    """

    def __init__(
        self,
        method: str | None = None,
        task: str | None = None,
        seed: int | None = None,
        name: str | None = None,
        project: str = "first-pl",
        group: str | None = None,
        tags: Sequence[str] | None = None,
        offline: bool = False,
        id: str | None = None,  # W&B's and WandbLogger's name for the run id
        resume: str | bool | None = "allow",
        save_dir: str = ".",
        job_type: str | None = None,
        **kwargs: Any,
    ) -> None:
        parts = [str(p) for p in (method, task) if p] + (
            [f"seed{seed}"] if seed is not None else []
        )
        tags = list(tags or [])
        tags += [p for p in parts if p not in tags]
        if not offline and "WANDB_MODE" not in os.environ and not wandb_has_credentials():
            offline = True
            _say(
                "W&B: no WANDB_API_KEY, netrc entry or WANDB_MODE; logging offline (`wandb sync` later)."
            )
        name = name or ("-".join(parts) or None)
        super().__init__(
            name=name,
            project=project,
            group=group or ("-".join(parts[:2]) or None),
            tags=tags or None,
            offline=offline,
            id=id or stable_run_id(save_dir, name, job_type),
            resume=resume,
            save_dir=save_dir,
            job_type=job_type,
            settings=wandb_settings(kwargs.pop("settings", None)),
            **kwargs,
        )


def wandb_loggers(trainer: pl.Trainer) -> list[WandbLogger]:
    """The trainer's W&B loggers (usually none or one)."""
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]


def log_calibration_media(
    trainer: pl.Trainer,
    key: str,
    bins: Mapping[str, Sequence[float]],
    diagram: Path | None,
    predictions: Path | None,
) -> None:
    """Log one task's reliability diagram (`wandb.Image`), bins (`wandb.Table` and a native
    `wandb.plot.bar` of accuracy per bin) and predictions CSV (an artifact) under `key`
    (e.g. `val/csqa`) to every W&B logger of the trainer. Call on global rank 0 only."""
    loggers = wandb_loggers(trainer)
    if not loggers:
        return
    import wandb

    n_bins = len(bins["count"])
    rows = [
        [
            f"{b / n_bins:.1f}-{(b + 1) / n_bins:.1f}",
            int(bins["count"][b]),
            float(bins["confidence"][b]),
            float(bins["accuracy"][b]),
        ]
        for b in range(n_bins)
    ]
    artifact_name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"predictions-{key}")
    for logger in loggers:
        table = wandb.Table(columns=["bin", "count", "confidence", "accuracy"], data=rows)
        media: dict[str, Any] = {
            f"{key}/bins": table,
            f"{key}/bins_accuracy": wandb.plot.bar(
                table, "bin", "accuracy", title=f"{key} accuracy per bin"
            ),
            "trainer/global_step": trainer.global_step,
        }
        if diagram is not None:
            media[f"{key}/reliability"] = wandb.Image(str(diagram), caption=key)
        logger.experiment.log(media)
        if predictions is not None:
            artifact = wandb.Artifact(artifact_name, type="predictions")
            artifact.add_file(str(predictions))
            logger.experiment.log_artifact(artifact)
