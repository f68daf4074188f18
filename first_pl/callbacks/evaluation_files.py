"""What `CalibrationEvaluation` writes for one task and split, on rank 0.

Predictions CSV, reliability diagram PNG (and W&B media), the task's entry of
`metrics_{split}.json` with bootstrap intervals for both confidence kinds, and during `fit` one
line of `val_curve.jsonl` per validation (the learning curve `first-pl report` draws). Kept
apart from the callback, which accumulates and logs, so each file has one job.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from first_pl.callbacks.wandb_logging import log_calibration_media
from first_pl.fileio.run_files import CURVE_FILE, predictions_file, reliability_file
from first_pl.metrics.bootstrap import bootstrap_ci
from first_pl.metrics.plots import reliability_diagram
from first_pl.metrics.selective import confidence_auroc
from first_pl.tasks.option_order import constant_answer

# Fields of a per-example row (`CalibrationEvaluation._update`) read by position: the gold
# option's log-score, the prompt tokens cut, the option texts and their token counts.
GOLD_SCORE, TRUNCATED, CHOICES, CHOICE_TOKENS = 6, 7, 8, 9
CURVE_KEYS = ("n", "acc", "ece", "trust", "loss", "ece_full_vocab", "ece_renormalised",
              "trust_full_vocab", "trust_renormalised")  # fmt: skip


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


def position_labeller(trainer: pl.Trainer, task: str, dataloader_idx: int) -> Callable[[int], str | int]:
    """Option position -> the task's letter, or the position itself when it has none."""
    letters = candidate_letters(trainer, task, dataloader_idx)

    def label(i: int) -> str | int:
        return letters[i] if letters is not None and 0 <= i < len(letters) else i

    return label


def answer_positions(golds: Sequence[int], label: Callable[[int], str | int]) -> dict[str, Any]:
    """The gold answer's count per option position (up to the last that holds one) and the
    constant-answer baseline: the best accuracy, in percent, of always giving one position."""
    counts = [0] * (max(golds) + 1)
    for gold in golds:
        counts[gold] += 1
    best, accuracy = constant_answer(counts)
    return {
        "gold_positions": {str(label(i)): count for i, count in enumerate(counts)},
        "constant_answer": {"answer": str(label(best)), "acc": 100 * accuracy},
    }


def examples_fingerprint(trainer: pl.Trainer, task: str, split: str) -> str | None:
    """`trainer.datamodule.fingerprints` of the task's split (what the report pairs runs on),
    None when the data module does not record it."""
    fingerprints = getattr(getattr(trainer, "datamodule", None), "fingerprints", None) or {}
    return fingerprints.get((task, "validation" if split == "val" else split))


def json_number(value: Any) -> float | None:
    """A JSON-safe float: NaN and infinities become null."""
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class EvaluationFiles:
    """Writes one task's files for one split into the trainer's log dir."""

    out_dir: Path
    split: str
    task: str
    n_bins: int
    n_resamples: int
    seed: int
    level: float

    def intervals(self, confidence: torch.Tensor, correct: torch.Tensor) -> dict[str, Any]:
        found = bootstrap_ci(
            confidence, correct, self.n_resamples, self.seed, self.level, self.n_bins
        )
        return {
            key: {k: json_number(v) for k, v in ci.as_dict().items()} for key, ci in found.items()
        }

    def write(
        self, trainer: pl.Trainer, idx: int, results: dict[str, dict[str, Any]], kind: str,
        scoring: str | None, figures: dict[str, float], rows: list[tuple],
    ) -> dict[str, Any]:  # fmt: skip
        """Predictions CSV, diagram PNG and W&B media of the task; returns its JSON entry.

        `results` holds a `MultipleChoiceCalibration.compute()` per confidence kind, `kind` is
        the task's own; `rows` are (id, pred, gold, full_vocab, renormalised, correct, gold
        log-score, prompt tokens cut, option texts, option token counts) per example.
        """
        by_kind = {}
        for other, result in results.items():
            confidence, correct = result["confidence"].cpu(), result["correct"].cpu()
            by_kind[other] = {
                "ece": json_number(result["ece"]),
                "trust": json_number(result["trust"]),
                "auroc": json_number(confidence_auroc(confidence, correct)),
                "ci": self.intervals(confidence, correct),
                "bins": {k: [float(x) for x in v.cpu()] for k, v in result["bins"].items()},
            }
        own = by_kind[kind]
        predictions = self.write_predictions(trainer, idx, rows, kind)
        diagram = self.out_dir / reliability_file(self.split, self.task)
        reliability_diagram(own["bins"], figures, diagram, title=f"{self.split} / {self.task}")
        log_calibration_media(
            trainer, f"{self.split}/{self.task}", own["bins"], diagram, predictions
        )
        return {
            "n": int(results[kind]["n"]),
            **{key: json_number(value) for key, value in figures.items()},
            "auroc": own["auroc"],
            "ci": own["ci"],
            "ci_level": self.level,
            "n_resamples": self.n_resamples,
            "bins": own["bins"],
            "scoring": scoring,
            "examples_fingerprint": examples_fingerprint(trainer, self.task, self.split),
            "confidence_kind": kind,
            "by_confidence": by_kind,
            **answer_positions([row[2] for row in rows], position_labeller(trainer, self.task, idx)),
        }

    def write_predictions(
        self, trainer: pl.Trainer, idx: int, rows: list[tuple], kind: str
    ) -> Path:
        """example_id, pred and gold (letters when the task has them), the task's confidence,
        and the prompt tokens cut to fit `eval_max_length` (0: the example was scored whole)."""
        path = self.out_dir / predictions_file(self.split, self.task)
        path.parent.mkdir(parents=True, exist_ok=True)
        label = position_labeller(trainer, self.task, idx)
        column = 3 if kind == "full_vocab" else 4
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["example_id", "pred", "gold", "confidence", "correct", "truncated_tokens"])
            for row in rows:
                example_id, pred, gold, ok = row[0], row[1], row[2], row[5]
                writer.writerow(
                    [example_id, label(pred), label(gold), f"{row[column]:.6g}", int(ok), row[TRUNCATED]]
                )
        return path

    def append_curve(self, trainer: pl.Trainer, entry: dict[str, Any]) -> None:
        """One learning-curve point: the step, the task and its figures (a JSON line)."""
        point = {"global_step": trainer.global_step, "epoch": trainer.current_epoch,
                 "task": self.task, "scoring": entry["scoring"],
                 "confidence_kind": entry["confidence_kind"]}  # fmt: skip
        point.update({key: entry.get(key) for key in CURVE_KEYS})
        with (self.out_dir / CURVE_FILE).open("a") as handle:
            handle.write(json.dumps(point) + "\n")
