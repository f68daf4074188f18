"""Calibration evaluation for any module that returns `EvalOutput`s (students and teacher).

The module only predicts; this callback owns the evaluation: per split and evaluation
dataloader (one task each) it accumulates a `MultipleChoiceCalibration` for each confidence
kind (`full_vocab`, the chosen option's full-vocabulary probability; `renormalised`, the
softmax over the options' scores), logs `{split}/{task}/acc|ece|trust|brier|nll|loss` for the
task's own kind and `ece_<kind>` / `trust_<kind>` for both through `pl_module.log` (so every
Lightning logger gets them), and on global rank 0 writes per-example predictions, a
reliability diagram and a JSON of every figure with bootstrap intervals, plus W&B media when a
`WandbLogger` is attached. Validation during `fit` also appends one line per task to
`val_curve.jsonl`: the learning curve that `first-pl report` draws.

A task's own confidence kind follows its scoring (`confidence="auto"`): `full_vocab` for the
token scorings (the paper's), `renormalised` for the option log-likelihood scorings, whose
exponentiated scores are not probabilities of one answer token. `loss` is the negative
log-likelihood of the gold option under that scoring (full vocabulary): the same quantity for
every training method, so their validation curves compare.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

from first_pl.callbacks.evaluation_files import (
    CHOICE_TOKENS,
    CHOICES,
    GOLD_SCORE,
    TRUNCATED,
    EvaluationFiles,
    candidate_letters,
    task_name,
)
from first_pl.callbacks.sampler_padding import SamplerPadding, eval_dataloader, select
from first_pl.data.batch import EvalOutput
from first_pl.data.template import OPTION_SCORINGS
from first_pl.fileio.atomic import write_json_atomic
from first_pl.fileio.run_files import metrics_file
from first_pl.metrics.calibration import CONFIDENCES, MultipleChoiceCalibration
from first_pl.metrics.prediction_bias import prediction_bias

REQUIRED_KEYS = ("candidate_probs", "candidate_mask", "gold", "pred", "confidence", "correct")
LOGGED = ("acc", "ece", "trust", "brier", "nll")
BY_KIND = ("ece", "trust")
CONFIDENCE_CHOICES = ("auto", *CONFIDENCES)


def log_scores(outputs: EvalOutput) -> torch.Tensor:
    """The options' log-space scores `[B, C]`, -inf at padding (log of the probabilities when
    a module returns no `candidate_logprobs`)."""
    mask = outputs["candidate_mask"].bool()
    if "candidate_logprobs" in outputs:
        scores = outputs["candidate_logprobs"].double()
    else:
        scores = outputs["candidate_probs"].double().log()
    return scores.masked_fill(~mask, float("-inf"))


def option_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the real options of log-space scores; uniform where every score is -inf.

    Taken from the scores, not by renormalising probabilities: the option log-likelihoods of
    long options are far below float32's smallest probability.
    """
    finite = torch.isfinite(scores).any(-1, keepdim=True)
    uniform = mask / mask.sum(-1, keepdim=True).clamp_min(1)
    safe = torch.where(finite, scores, torch.zeros_like(scores)).masked_fill(~mask, float("-inf"))
    return torch.where(finite, torch.softmax(safe, dim=-1), uniform)


def _gather_rows(rows: list[Any]) -> list[Any]:
    """Every rank's items (per-example rows, or a scoring) on every rank, in rank order."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return rows
    gathered: list[list[tuple] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, rows)
    return [row for part in gathered for row in (part or [])]


class CalibrationEvaluation(Callback):
    """Accuracy, ECE, Trust, Brier, NLL, loss and reliability per task for validation and test.

    Args:
        n_bins: equal-width bins for ECE and the reliability diagram.
        confidence: the kind reported as a task's `ece` / `trust`: "auto" (by the task's
            scoring, see the module docstring), "full_vocab" (the paper's) or "renormalised".
            Both kinds are always logged and written as `ece_<kind>` / `trust_<kind>`.
        n_resamples, seed, level: percentile bootstrap for the JSON's intervals.
        write_files: write predictions CSV, diagram PNG, metrics JSON and the validation curve
            on rank 0.
    """

    def __init__(
        self,
        n_bins: int = 10,
        confidence: str = "auto",
        n_resamples: int = 1000,
        seed: int = 0,
        level: float = 0.95,
        write_files: bool = True,
    ) -> None:
        if confidence not in CONFIDENCE_CHOICES:
            raise ValueError(f"confidence must be one of {CONFIDENCE_CHOICES}, got {confidence!r}")
        MultipleChoiceCalibration(n_bins=n_bins)  # validate early
        self.n_bins, self.confidence = n_bins, confidence
        self.n_resamples, self.seed, self.level = n_resamples, seed, level
        self.write_files = write_files
        self._metrics: dict[int, dict[str, MultipleChoiceCalibration]] = {}
        self._rows: dict[int, list[tuple]] = {}
        self._scoring: dict[int, str | None] = {}
        self._warned: set[str] = set()
        self._padding = SamplerPadding()

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
            self._update(
                outputs, dataloader_idx, pl_module, eval_dataloader(trainer, "val", dataloader_idx)
            )

    def on_test_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        self._update(
            outputs, dataloader_idx, pl_module, eval_dataloader(trainer, "test", dataloader_idx)
        )

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._finish(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish(trainer, pl_module, "test")

    # accumulation ---------------------------------------------------------------------------

    def _new_metrics(self, pl_module: pl.LightningModule) -> dict[str, MultipleChoiceCalibration]:
        return {
            kind: MultipleChoiceCalibration(self.n_bins, kind).to(pl_module.device)
            for kind in CONFIDENCES
        }

    def _start(self, num_batches: Sequence[int | float], pl_module: pl.LightningModule) -> None:
        """Metrics per dataloader, created on every rank so that all ranks sync all of them."""
        self._metrics = {idx: self._new_metrics(pl_module) for idx in range(len(num_batches))}
        self._rows = {idx: [] for idx in self._metrics}
        self._scoring = {}
        self._padding.reset()

    def _update(
        self, outputs: Any, dataloader_idx: int, pl_module: pl.LightningModule, dataloader: Any
    ) -> None:
        if not isinstance(outputs, Mapping) or any(k not in outputs for k in REQUIRED_KEYS):
            self._warn_once(
                "no-eval-output",
                "CalibrationEvaluation: the step did not return an EvalOutput (first_pl.data.batch) "
                f"(needs keys {REQUIRED_KEYS}); nothing is evaluated for it.",
            )
            return
        if dataloader_idx not in self._metrics:  # a loop that skipped the epoch-start hook
            self._metrics[dataloader_idx] = self._new_metrics(pl_module)
            self._rows[dataloader_idx] = []
        keep = self._padding.keep(dataloader, dataloader_idx, outputs["pred"].shape[0])
        if keep is not None:
            outputs = select(outputs, keep)
            if not keep.any():
                return
        mask = outputs["candidate_mask"].bool()
        scores = log_scores(outputs)
        softmax = option_softmax(scores, mask)
        pred, gold = outputs["pred"].long(), outputs["gold"].long()
        # The metrics renormalise `candidate_probs`: give them the softmax of the scores,
        # already normalised, so long options' underflowing probabilities do not matter.
        view = {**{k: outputs[k] for k in REQUIRED_KEYS}, "candidate_probs": softmax}
        for metric in self._metrics[dataloader_idx].values():
            metric.update(view)
        self._scoring[dataloader_idx] = outputs.get("scoring")
        n = pred.shape[0]
        ids = outputs.get("example_id") or [""] * n
        truncated = outputs.get("truncated_tokens")
        lengths = outputs.get("choice_tokens")
        self._rows[dataloader_idx].extend(
            zip(
                [str(i) for i in ids],
                pred.tolist(),
                gold.tolist(),
                outputs["confidence"].reshape(-1).tolist(),
                softmax.gather(1, pred.unsqueeze(1)).squeeze(1).tolist(),
                outputs["correct"].bool().tolist(),
                scores.gather(1, gold.unsqueeze(1)).squeeze(1).tolist(),
                truncated.tolist() if truncated is not None else [0] * n,
                [tuple(choices) for choices in outputs.get("choices") or [()] * n],
                lengths.tolist() if lengths is not None else [[]] * n,
                strict=True,
            )
        )

    def primary_kind(self, scoring: str | None) -> str:
        """The confidence kind reported as a task's `ece` / `trust`."""
        if self.confidence != "auto":
            return self.confidence
        return "renormalised" if scoring in OPTION_SCORINGS else "full_vocab"

    # reporting ------------------------------------------------------------------------------

    def _finish(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> None:
        out_dir = Path(trainer.log_dir or trainer.default_root_dir)  # log_dir is collective
        report: dict[str, Any] = {}
        for idx in sorted(self._metrics):
            task = task_name(trainer, idx)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*compute.*before.*update.*")
                # syncs across ranks
                results = {kind: m.compute() for kind, m in self._metrics[idx].items()}
            rows = _gather_rows(self._rows[idx])
            if int(results["full_vocab"]["n"]) == 0:
                self._warn_once(
                    f"{split}/{task}",
                    f"CalibrationEvaluation: {split}/{task} is empty; nothing logged.",
                )
                continue
            # every rank's scoring: a rank whose shard of the task was empty has seen none
            seen = _gather_rows([self._scoring[idx]] if self._scoring.get(idx) else [])
            scoring = seen[0] if seen else None
            kind = self.primary_kind(scoring)
            figures = {key: float(results[kind][key]) for key in LOGGED}
            figures["loss"] = -sum(row[GOLD_SCORE] for row in rows) / len(rows)
            for other in CONFIDENCES:
                for key in BY_KIND:
                    figures[f"{key}_{other}"] = float(results[other][key])
            for key, value in figures.items():
                pl_module.log(
                    f"{split}/{task}/{key}", value, sync_dist=True, add_dataloader_idx=False
                )
            checks = self.checks(split, task, rows, candidate_letters(trainer, task, idx))
            if trainer.is_global_zero and self.write_files:
                files = EvaluationFiles(out_dir, split, task, self.n_bins, self.n_resamples,
                                        self.seed, self.level)  # fmt: skip
                report[task] = files.write(trainer, idx, results, kind, scoring, figures, rows)
                report[task].update(checks)
                if split == "val" and trainer.state.fn == "fit":
                    files.append_curve(trainer, report[task])
        if report and trainer.is_global_zero and self.write_files:
            summary = {
                "split": split,
                "epoch": trainer.current_epoch,
                "global_step": trainer.global_step,
                "tasks": report,
            }
            write_json_atomic(out_dir / metrics_file(split), summary)
        self._metrics, self._rows, self._scoring = {}, {}, {}

    def checks(
        self, split: str, task: str, rows: list[tuple], letters: Sequence[str] | None
    ) -> dict[str, Any]:
        """What the task's figures stand on: prompts cut to fit the length, and predictions
        that follow an option's form (`first_pl.metrics.prediction_bias`, warned about; a
        position named by its letter when the task has `letters`)."""
        cut = [row[TRUNCATED] for row in rows if row[TRUNCATED]]
        biases = prediction_bias(
            [row[1] for row in rows], [row[2] for row in rows],
            [row[CHOICES] for row in rows], [row[CHOICE_TOKENS] for row in rows],
        )  # fmt: skip
        what = f"{split}/{task}"

        def label(position: int) -> str:
            return letters[position] if letters and position < len(letters) else str(position)

        found = [{**bias.as_dict(), "description": bias.describe(label)} for bias in biases]
        for bias in found:
            self._warn_once(
                f"{what}/{bias['kind']}",
                f"CalibrationEvaluation: {what}: the predictions follow {bias['description']}; "
                "the accuracy may measure the scoring or the answer format rather than the task "
                "(compare another template.scoring, e.g. option_loglik_norm_bytes or option_pmi)",
            )
        return {"truncated_examples": len(cut), "truncated_tokens": sum(cut), "prediction_bias": found}

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            rank_zero_warn(message)
