"""Distillation strategies: Distill, LabelSmoothingDistill (Eq. 3) and FIRST (Eq. 4).

They share one loss (Eq. 5, `distillation_loss` on the teacher's top-k at the response
positions) and differ only in `teacher_target`, the transform of the stored top-k
probabilities into the target distribution. The teacher arrays come from `DistillDataModule`
(docs/ARCHITECTURE.md: `teacher_ids` / `teacher_probs` `[B, L, k]`, aligned with `labels`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch

from first_pl.knowledge.calibration import CalibrationResult
from first_pl.knowledge.transforms import label_smooth, renormalize, temperature_scale
from first_pl.models import ModelSpec
from first_pl.modules.base import OptimizerConfig, StudentModule
from first_pl.modules.losses import distillation_loss

TEACHER_KEYS = ("teacher_ids", "teacher_probs")


class DistillationStrategy(StudentModule):
    """Sparse top-k KL to a transformed teacher target; subclasses define `teacher_target`.

    Args:
        renormalize_student: compare with the student's softmax over the teacher's k ids only
            (default: its full-vocab probabilities at those ids, the paper).
        ce_weight: weight of the hard-label cross-entropy mixed into the loss (0: pure Eq. 5).
    """

    def __init__(
        self,
        model: ModelSpec | None = None,
        optimizer: OptimizerConfig | None = None,
        renormalize_student: bool = False,
        ce_weight: float = 0.0,
    ) -> None:
        if not 0.0 <= ce_weight <= 1.0:
            raise ValueError(f"ce_weight must be in [0, 1], got {ce_weight}")
        super().__init__(model=model, optimizer=optimizer)
        self.renormalize_student = renormalize_student
        self.ce_weight = ce_weight

    def teacher_target(self, probs: torch.Tensor) -> torch.Tensor:
        """The target distribution `[P, k]` from the stored top-k probabilities `[P, k]`."""
        raise NotImplementedError

    def on_fit_start(self) -> None:
        """Refuse a store whose teacher ids index past the student's vocabulary, before step 1."""
        store = getattr(getattr(self.trainer, "datamodule", None), "teacher_store", None)
        if store is not None and self.model is not None:
            vocab = self.model.get_output_embeddings().weight.shape[0]
            store.validate_against(student_vocab_size=int(vocab))

    def loss(
        self, logits: torch.Tensor, targets: torch.Tensor, batch: dict[str, Any], mask: torch.Tensor
    ) -> torch.Tensor:
        missing = [key for key in TEACHER_KEYS if key not in batch]
        if missing:
            raise ValueError(
                f"{type(self).__name__} needs the teacher's top-k in each training batch but the batch "
                f"has no {' / '.join(missing)}: train it on first_pl.data.distill_datamodule.DistillDataModule"
            )
        ids, probs = batch["teacher_ids"], batch["teacher_probs"]
        if ids.shape[:2] != mask.shape or probs.shape != ids.shape:
            raise ValueError(
                f"teacher_ids {tuple(ids.shape)} / teacher_probs {tuple(probs.shape)} must be [B, L, k] "
                f"aligned with labels {tuple(mask.shape)}"
            )
        target = self.teacher_target(probs[mask].float())
        return distillation_loss(
            logits, ids[mask], target, targets, self.ce_weight, self.renormalize_student
        )


class Distill(DistillationStrategy):
    """Plain distillation: the target is the teacher's top-k, renormalised to sum 1 by default.

    Args:
        renormalize_targets: divide the top-k by their sum (DESIGN default); False keeps the
            full-vocab probabilities, whose missing tail mass then pulls on nothing.
    """

    def __init__(
        self,
        model: ModelSpec | None = None,
        optimizer: OptimizerConfig | None = None,
        renormalize_targets: bool = True,
        renormalize_student: bool = False,
        ce_weight: float = 0.0,
    ) -> None:
        super().__init__(
            model=model,
            optimizer=optimizer,
            renormalize_student=renormalize_student,
            ce_weight=ce_weight,
        )
        self.renormalize_targets = renormalize_targets

    def teacher_target(self, probs: torch.Tensor) -> torch.Tensor:
        return renormalize(probs) if self.renormalize_targets else probs


class LabelSmoothingDistill(DistillationStrategy):
    """Distill w/ LS (Eq. 3): on the renormalised top-k, p1 -= delta, p2..pk += delta / (k - 1).

    Rows whose renormalised p1 is below delta are clamped and renormalised, with a warning
    (`label_smooth`).
    """

    def __init__(
        self,
        model: ModelSpec | None = None,
        optimizer: OptimizerConfig | None = None,
        delta: float = 0.1,
        renormalize_student: bool = False,
        ce_weight: float = 0.0,
    ) -> None:
        if not 0.0 <= delta < 1.0:  # also rejects NaN
            raise ValueError(f"delta must be in [0, 1), got {delta}")
        super().__init__(
            model=model,
            optimizer=optimizer,
            renormalize_student=renormalize_student,
            ce_weight=ce_weight,
        )
        self.delta = delta

    def teacher_target(self, probs: torch.Tensor) -> torch.Tensor:
        return label_smooth(probs, self.delta)


def calibrated_temperature(calibration: str | Path | None) -> float:
    """The c that `first-pl calibrate` chose, read from its `calibration.json`."""
    if calibration is None:
        raise ValueError(
            "temperature='auto' needs calibration=<path to the calibration.json written by "
            "`first-pl calibrate`>, or give temperature as a number"
        )
    try:
        return CalibrationResult.from_json(calibration).temperature
    except FileNotFoundError:
        raise ValueError(
            f"temperature='auto': calibration file {calibration} does not exist (run `first-pl calibrate`)"
        ) from None
    except (json.JSONDecodeError, TypeError, KeyError, ValueError) as err:
        raise ValueError(
            f"temperature='auto': {calibration} is not a calibration result of `first-pl calibrate` ({err})"
        ) from err


class FIRST(DistillationStrategy):
    """FIRST w/ TS (Eq. 4): target softmax(p / c) over the raw stored top-k probabilities.

    The same input as `first-pl calibrate` scores (the stored probabilities, not renormalised),
    so the c chosen there is the c applied here.

    Args:
        temperature: c > 0, or "auto" to read the c chosen by `first-pl calibrate` from
            `calibration`. The resolved number replaces "auto" in the saved hyper-parameters,
            so a checkpoint reloads without the calibration file.
        calibration: path of `calibration.json` (used when temperature is "auto").
    """

    def __init__(
        self,
        model: ModelSpec | None = None,
        optimizer: OptimizerConfig | None = None,
        temperature: float | Literal["auto"] = "auto",
        calibration: str | None = None,
        renormalize_student: bool = False,
        ce_weight: float = 0.0,
    ) -> None:
        if temperature == "auto":
            c, source = calibrated_temperature(calibration), f" (read from {calibration})"
        elif isinstance(temperature, (int, float)):
            c, source = float(temperature), ""
        else:
            raise ValueError(f"temperature must be a number > 0 or 'auto', got {temperature!r}")
        if not c > 0:  # also rejects NaN
            raise ValueError(f"temperature must be > 0, got {c}{source}")
        super().__init__(
            model=model,
            optimizer=optimizer,
            renormalize_student=renormalize_student,
            ce_weight=ce_weight,
        )
        self.temperature = c
        self.hparams["temperature"] = c

    def teacher_target(self, probs: torch.Tensor) -> torch.Tensor:
        return temperature_scale(probs, self.temperature)
