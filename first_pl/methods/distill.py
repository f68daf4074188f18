"""Distillation methods: Distill, LabelSmoothingDistill (Eq. 3) and FIRST (Eq. 4 or p^(1/T)).

They share one loss (Eq. 5, `distillation_loss` on the teacher's top-k at the response
positions) and differ only in `teacher_target`, the transform of the stored top-k
probabilities into the target distribution. Every method can add the tail bucket (the
mass outside the top-k as a (k+1)-th entry, matched against the student's own mass outside
the k ids) before its transform. The teacher arrays come from `DistillDataModule`
(docs/ARCHITECTURE.md: `teacher_ids` / `teacher_probs` `[B, L, k]`, aligned with `labels`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch

from first_pl.data.batch import TEACHER_KEYS, TrainBatch
from first_pl.methods.base import MethodModule, OptimizerConfig
from first_pl.methods.losses import distillation_loss
from first_pl.models import ModelSpec
from first_pl.teacher.parameter_choice import (
    TEMPERATURE_TRANSFORMS,
    CalibrationResult,
    check_calibration_store,
)
from first_pl.teacher.transforms import TRANSFORMS, label_smooth, renormalize, with_tail


class DistillationMethod(MethodModule):
    """Sparse top-k KL to a transformed teacher target; subclasses define `teacher_target`.

    Args:
        renormalize_student: compare with the student's softmax over the teacher's k ids only
            (default: its full-vocab probabilities at those ids, the paper).
        ce_weight: weight of the hard-label cross-entropy mixed into the loss (0: pure Eq. 5).
        tail_bucket: append 1 - sum(top-k) as a (k+1)-th target entry before the transform and
            match it against the student's mass outside the k ids (DistillKit's
            `symmetric_uniform`-style tail, TRL's `loss_add_tail`, the paper release's
            `use_other_token`); excludes `renormalize_student`.
    """

    def __init__(
        self,
        model: ModelSpec | None = None,
        optimizer: OptimizerConfig | None = None,
        renormalize_student: bool = False,
        ce_weight: float = 0.0,
        tail_bucket: bool = False,
    ) -> None:
        if not 0.0 <= ce_weight <= 1.0:
            raise ValueError(f"ce_weight must be in [0, 1], got {ce_weight}")
        if tail_bucket and renormalize_student:
            raise ValueError(
                "tail_bucket=True needs renormalize_student=False: a student renormalised over "
                "the k ids has no mass outside them to match the tail bucket"
            )
        super().__init__(model=model, optimizer=optimizer)
        self.renormalize_student = renormalize_student
        self.ce_weight = ce_weight
        self.tail_bucket = tail_bucket
        # (path, CalibrationResult) when a parameter is "auto": checked against the store at fit
        self.calibrated_from: tuple[str, CalibrationResult] | None = None

    def teacher_target(self, probs: torch.Tensor) -> torch.Tensor:
        """The target distribution from the stored top-k `[P, k]` (`[P, k + 1]` with the tail)."""
        raise NotImplementedError

    def on_fit_start(self) -> None:
        """Before step 1, refuse a store whose teacher ids index past the student's vocabulary,
        and a calibrated parameter chosen on another teacher, task, k or tokenisation."""
        store = getattr(getattr(self.trainer, "datamodule", None), "teacher_store", None)
        if store is not None and self.model is not None:
            vocab = self.model.get_output_embeddings().weight.shape[0]
            store.validate_against(student_vocab_size=int(vocab))
        if store is not None and self.calibrated_from is not None:
            path, result = self.calibrated_from
            check_calibration_store(path, result.settings, store.path, store.metadata)

    def loss(
        self, logits: torch.Tensor, targets: torch.Tensor, batch: TrainBatch, mask: torch.Tensor
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
        stored = probs[mask].float()
        target = self.teacher_target(with_tail(stored) if self.tail_bucket else stored)
        return distillation_loss(
            logits,
            ids[mask],
            target,
            targets,
            self.ce_weight,
            self.renormalize_student,
            tail=self.tail_bucket,
        )


class Distill(DistillationMethod):
    """Plain distillation: the target is the teacher's top-k, renormalised to sum 1 by default.

    Args:
        renormalize_targets: divide the top-k by their sum (DESIGN default); False keeps the
            full-vocab probabilities, whose missing tail mass then pulls on nothing (with
            `tail_bucket` the k + 1 entries already sum to 1 and both settings agree).
    """

    def __init__(
        self,
        model: ModelSpec | None = None,
        optimizer: OptimizerConfig | None = None,
        renormalize_targets: bool = True,
        renormalize_student: bool = False,
        ce_weight: float = 0.0,
        tail_bucket: bool = False,
    ) -> None:
        super().__init__(
            model=model,
            optimizer=optimizer,
            renormalize_student=renormalize_student,
            ce_weight=ce_weight,
            tail_bucket=tail_bucket,
        )
        self.renormalize_targets = renormalize_targets

    def teacher_target(self, probs: torch.Tensor) -> torch.Tensor:
        return renormalize(probs) if self.renormalize_targets else probs


class LabelSmoothingDistill(DistillationMethod):
    """Distill w/ LS (Eq. 3): on the renormalised top-k, p1 -= delta, p2..pk += delta / (k - 1).

    Rows whose renormalised p1 is below delta are clamped and renormalised, with a warning
    (`label_smooth`). With the tail bucket, it is one more entry receiving delta / k.

    Args:
        delta: in [0, 1), or "auto" for the delta that `first-pl calibrate --transform
            label_smoothing` chose (read from `calibration`; the number replaces "auto" in the
            saved hyper-parameters).
        calibration: path of that `calibration.json`.
    """

    def __init__(
        self,
        model: ModelSpec | None = None,
        optimizer: OptimizerConfig | None = None,
        delta: float | Literal["auto"] = 0.1,
        calibration: str | None = None,
        renormalize_student: bool = False,
        ce_weight: float = 0.0,
        tail_bucket: bool = False,
    ) -> None:
        result = None
        if delta == "auto":
            result = calibrated_choice(calibration, "delta", ("label_smoothing",), tail_bucket)
            delta = result.parameter
        if not isinstance(delta, (int, float)) or not 0.0 <= delta < 1.0:  # also rejects NaN
            raise ValueError(f"delta must be in [0, 1), got {delta!r} (or 'auto')")
        super().__init__(
            model=model,
            optimizer=optimizer,
            renormalize_student=renormalize_student,
            ce_weight=ce_weight,
            tail_bucket=tail_bucket,
        )
        self.delta = float(delta)
        self.hparams["delta"] = self.delta
        self.calibrated_from = (str(calibration), result) if result is not None else None

    def teacher_target(self, probs: torch.Tensor) -> torch.Tensor:
        return label_smooth(probs, self.delta)


def calibrated_choice(
    calibration: str | Path | None,
    option: str,
    transforms: tuple[str, ...],
    tail_bucket: bool,
) -> CalibrationResult:
    """What `first-pl calibrate` chose (its parameter and transform), from its `calibration.json`.

    Refuses a result for another transform than this method applies (`transforms`), one
    chosen with the tail bucket set differently from this method's `tail_bucket` (the
    parameter is only the right one for the same target), and one chosen on a train or test
    store without calibrate's explicit `allow_split` (files written before calibrate refused them).
    The store it was chosen on is compared with the training store at fit start
    (`check_calibration_store`), when that store is open.
    """
    if calibration is None:
        raise ValueError(
            f"{option}='auto' needs calibration=<path to the calibration.json written by "
            f"`first-pl calibrate`>, or give {option} as a number"
        )
    try:
        result = CalibrationResult.from_json(calibration)
    except FileNotFoundError:
        raise ValueError(
            f"{option}='auto': calibration file {calibration} does not exist (run `first-pl calibrate`)"
        ) from None
    except (json.JSONDecodeError, TypeError, KeyError, ValueError) as err:
        raise ValueError(
            f"{option}='auto': {calibration} is not a calibration result of `first-pl calibrate` ({err})"
        ) from err
    if result.transform not in transforms:
        raise ValueError(
            f"{option}='auto': {calibration} calibrated transform {result.transform!r}, but this "
            f"method applies {' or '.join(map(repr, transforms))}; run `first-pl calibrate "
            f"--transform {transforms[0]}`"
        )
    split = result.settings.get("split")
    if split in ("train", "test") and not result.settings.get("allow_split", False):
        raise ValueError(
            f"{option}='auto': {calibration} was chosen on the {split} split; calibrate on the "
            "validation store (`first-pl calibrate --allow_split true` records a deliberate choice)"
        )
    if result.tail_bucket != tail_bucket:
        raise ValueError(
            f"{option}='auto': {calibration} was calibrated with tail_bucket={result.tail_bucket} "
            f"but this method has tail_bucket={tail_bucket}; calibrate again with "
            f"--tail_bucket {str(tail_bucket).lower()}"
        )
    return result


class FIRST(DistillationMethod):
    """FIRST w/ TS: the stored top-k temperature-scaled, by Eq. 4 or on log-probabilities.

    `transform='prob_temperature'` (the paper, Eq. 4): softmax(p / c) over the raw stored
    probabilities, the same input `first-pl calibrate` scores, so the c chosen there is the c
    applied here. `'log_temperature'`: p^(1/T) renormalised (DistillKit's and axolotl's
    convention).

    Args:
        temperature: Eq. 4's c in (0, 1] (or the log-space T in [0.1, 10]), or "auto" to read the transform and the value that
            `first-pl calibrate` chose from `calibration`. The resolved values replace "auto"
            in the saved hyper-parameters, so a checkpoint reloads without the calibration file.
        calibration: path of `calibration.json` (used when temperature is "auto").
        transform: 'prob_temperature' or 'log_temperature'; None: the calibrated one with
            "auto", else 'prob_temperature'.
    """

    def __init__(
        self,
        model: ModelSpec | None = None,
        optimizer: OptimizerConfig | None = None,
        temperature: float | Literal["auto"] = "auto",
        calibration: str | None = None,
        renormalize_student: bool = False,
        ce_weight: float = 0.0,
        transform: Literal["prob_temperature", "log_temperature"] | None = None,
        tail_bucket: bool = False,
    ) -> None:
        allowed = (transform,) if transform else TEMPERATURE_TRANSFORMS
        if transform is not None and transform not in TEMPERATURE_TRANSFORMS:
            raise ValueError(
                f"transform must be one of {TEMPERATURE_TRANSFORMS}, got {transform!r}"
            )
        result = None
        if temperature == "auto":
            result = calibrated_choice(calibration, "temperature", allowed, tail_bucket)
            c, transform, source = result.parameter, result.transform, f" (read from {calibration})"
        elif isinstance(temperature, (int, float)):
            c, source = float(temperature), ""
        else:
            raise ValueError(f"temperature must be a number > 0 or 'auto', got {temperature!r}")
        if not c > 0:  # also rejects NaN
            raise ValueError(f"temperature must be > 0, got {c}{source}")
        spec = TRANSFORMS[transform or "prob_temperature"]
        if not spec.contains(c):  # beyond the range the target is one-hot or uniform
            raise ValueError(
                f"temperature ({spec.parameter} of transform {spec.name!r}) must be in "
                f"{spec.describe_range()}, the documented range, got {c}{source}"
            )
        super().__init__(
            model=model,
            optimizer=optimizer,
            renormalize_student=renormalize_student,
            ce_weight=ce_weight,
            tail_bucket=tail_bucket,
        )
        self.temperature = c
        self.transform = transform or "prob_temperature"
        self.hparams["temperature"] = c
        self.hparams["transform"] = self.transform
        self.calibrated_from = (str(calibration), result) if result is not None else None

    def teacher_target(self, probs: torch.Tensor) -> torch.Tensor:
        return TRANSFORMS[self.transform].apply(probs, self.temperature)
