"""Calibration evaluation for any module that returns `EvalOutput`s (students and teacher).

The module only predicts; this callback owns the evaluation: per split and evaluation
dataloader (one task each) it accumulates a `MultipleChoiceCalibration`, logs
`{split}/{task}/acc|ece|trust|brier|nll` through `pl_module.log` (so every Lightning logger gets
them), and on global rank 0 writes per-example predictions, a reliability diagram and a JSON
of every figure with bootstrap intervals, plus W&B media when a `WandbLogger` is attached.
"""

from __future__ import annotations

import csv
import json
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

from first_pl.callbacks.wandb_logging import log_calibration_media
from first_pl.metrics.bootstrap import bootstrap_ci
from first_pl.metrics.calibration import MultipleChoiceCalibration
from first_pl.metrics.plots import reliability_diagram
from first_pl.metrics.selective import confidence_auroc

REQUIRED_KEYS = ("candidate_probs", "candidate_mask", "gold", "pred", "confidence", "correct")
LOGGED = ("acc", "ece", "trust", "brier", "nll")


def task_name(trainer: pl.Trainer, dataloader_idx: int) -> str:
    """`trainer.datamodule.eval_task_names[idx]`, else `task{idx}`."""
    names = getattr(getattr(trainer, "datamodule", None), "eval_task_names", None)
    if names is not None and dataloader_idx < len(names):
        return str(names[dataloader_idx])
    return f"task{dataloader_idx}"


def candidate_letters(trainer: pl.Trainer, task: str, dataloader_idx: int) -> Sequence[str] | None:
    """Option letters of a task from `trainer.datamodule.candidate_letters`, if it has them.

    Accepted forms: one string or sequence of single letters shared by all tasks ("ABCDE"),
    a mapping task name -> letters, or a sequence of letters per evaluation dataloader.
    """
    letters = getattr(getattr(trainer, "datamodule", None), "candidate_letters", None)
    if letters is None:
        return None
    if isinstance(letters, str):
        return letters
    if isinstance(letters, Mapping):
        return letters.get(task)
    if all(isinstance(x, str) and len(x) == 1 for x in letters):
        return letters
    return letters[dataloader_idx] if dataloader_idx < len(letters) else None


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _number(value: Any) -> float | None:
    """A JSON-safe float: NaN and infinities become null."""
    value = float(value)
    return value if math.isfinite(value) else None


def _gather_rows(rows: list[tuple]) -> list[tuple]:
    """Every rank's per-example rows on every rank (in rank order)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return rows
    gathered: list[list[tuple] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, rows)
    return [row for part in gathered for row in (part or [])]


class CalibrationEvaluation(Callback):
    """Accuracy, ECE, Trust, Brier, NLL and reliability per task for validation and test.

    Args:
        n_bins: equal-width bins for ECE and the reliability diagram.
        confidence: "full_vocab" (the paper's) or "renormalised" over the candidates.
        n_resamples, seed, level: percentile bootstrap for the JSON's intervals.
        write_files: write predictions CSV, diagram PNG and metrics JSON on rank 0.
    """

    def __init__(
        self,
        n_bins: int = 10,
        confidence: str = "full_vocab",
        n_resamples: int = 1000,
        seed: int = 0,
        level: float = 0.95,
        write_files: bool = True,
    ) -> None:
        MultipleChoiceCalibration(n_bins=n_bins, confidence=confidence)  # validate early
        self.n_bins, self.confidence = n_bins, confidence
        self.n_resamples, self.seed, self.level = n_resamples, seed, level
        self.write_files = write_files
        self._metrics: dict[int, MultipleChoiceCalibration] = {}
        self._rows: dict[int, list[tuple]] = {}
        self._warned: set[str] = set()

    # Lightning hooks ------------------------------------------------------------------------

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(trainer.num_val_batches, pl_module)

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(trainer.num_test_batches, pl_module)

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        if not trainer.sanity_checking:
            self._update(outputs, dataloader_idx, pl_module)

    def on_test_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        self._update(outputs, dataloader_idx, pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._finish(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish(trainer, pl_module, "test")

    # accumulation ---------------------------------------------------------------------------

    def _start(self, num_batches: Sequence[int | float], pl_module: pl.LightningModule) -> None:
        """One metric per dataloader, created on every rank so that all ranks sync all of them."""
        self._metrics = {
            idx: MultipleChoiceCalibration(self.n_bins, self.confidence).to(pl_module.device)
            for idx in range(len(num_batches))
        }
        self._rows = {idx: [] for idx in self._metrics}

    def _update(self, outputs: Any, dataloader_idx: int, pl_module: pl.LightningModule) -> None:
        if not isinstance(outputs, Mapping) or any(k not in outputs for k in REQUIRED_KEYS):
            self._warn_once(
                "no-eval-output",
                "CalibrationEvaluation: the step did not return an EvalOutput "
                f"(needs keys {REQUIRED_KEYS}); nothing is evaluated for it.",
            )
            return
        if dataloader_idx not in self._metrics:  # a loop that skipped the epoch-start hook
            self._metrics[dataloader_idx] = MultipleChoiceCalibration(self.n_bins, self.confidence)
            self._metrics[dataloader_idx].to(pl_module.device)
            self._rows[dataloader_idx] = []
        metric = self._metrics[dataloader_idx]
        metric.update({k: outputs[k] for k in REQUIRED_KEYS})
        n = outputs["pred"].shape[0]
        ids = outputs.get("example_id") or [""] * n
        self._rows[dataloader_idx].extend(
            zip(
                [str(i) for i in ids],
                outputs["pred"].tolist(),
                outputs["gold"].tolist(),
                metric.confidence[-1].tolist(),
                outputs["correct"].bool().tolist(),
                strict=True,
            )
        )

    # reporting ------------------------------------------------------------------------------

    def _finish(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> None:
        out_dir = Path(trainer.log_dir or trainer.default_root_dir)  # log_dir is collective
        report: dict[str, Any] = {}
        for idx in sorted(self._metrics):
            task = task_name(trainer, idx)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*compute.*before.*update.*")
                result = self._metrics[idx].compute()  # syncs across ranks
            rows = _gather_rows(self._rows[idx])
            if int(result["n"]) == 0:
                self._warn_once(
                    f"{split}/{task}",
                    f"CalibrationEvaluation: {split}/{task} is empty; nothing logged.",
                )
                continue
            for key in LOGGED:
                value = float(result[key])
                pl_module.log(
                    f"{split}/{task}/{key}", value, sync_dist=True, add_dataloader_idx=False
                )
            if trainer.is_global_zero and self.write_files:
                report[task] = self._write_task(trainer, out_dir, split, task, idx, result, rows)
        if report and trainer.is_global_zero and self.write_files:
            summary = {
                "split": split,
                "epoch": trainer.current_epoch,
                "global_step": trainer.global_step,
                "tasks": report,
            }
            (out_dir / f"metrics_{split}.json").write_text(json.dumps(summary, indent=2))
        self._metrics, self._rows = {}, {}

    def _write_task(
        self, trainer: pl.Trainer, out_dir: Path, split: str, task: str, idx: int,
        result: dict[str, Any], rows: list[tuple],
    ) -> dict[str, Any]:  # fmt: skip
        """Predictions CSV, diagram PNG and W&B media of one task; returns its JSON entry."""
        confidence, correct = result["confidence"].cpu(), result["correct"].cpu()
        bins = {k: [float(x) for x in v.cpu()] for k, v in result["bins"].items()}
        figures = {key: float(result[key]) for key in LOGGED}
        stem = f"{split}_{_safe_name(task)}"
        predictions = out_dir / "predictions" / f"{stem}.csv"
        predictions.parent.mkdir(parents=True, exist_ok=True)
        letters = candidate_letters(trainer, task, idx)

        def label(i: int) -> str | int:
            return letters[i] if letters is not None and 0 <= i < len(letters) else i

        with predictions.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["example_id", "pred", "gold", "confidence", "correct"])
            for example_id, pred, gold, conf, ok in rows:
                writer.writerow([example_id, label(pred), label(gold), f"{conf:.6g}", int(ok)])
        diagram = out_dir / "reliability" / f"{stem}.png"
        reliability_diagram(bins, figures, diagram, title=f"{split} / {task}")
        log_calibration_media(trainer, f"{split}/{task}", bins, diagram, predictions)
        intervals = bootstrap_ci(
            confidence, correct, self.n_resamples, self.seed, self.level, self.n_bins
        )
        return {
            "n": int(result["n"]),
            **{key: _number(value) for key, value in figures.items()},
            "auroc": _number(confidence_auroc(confidence, correct)),
            "ci": {
                key: {k: _number(v) for k, v in ci.as_dict().items()}
                for key, ci in intervals.items()
            },
            "ci_level": self.level,
            "n_resamples": self.n_resamples,
            "bins": bins,
            "confidence_kind": self.confidence,
        }

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            rank_zero_warn(message)
