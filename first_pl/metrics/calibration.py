"""Calibration metrics for multiple-choice evaluation as torchmetrics `Metric`s.

Every state that can be a sum is a sum (`dist_reduce_fx="sum"`, float64), so the value after a
distributed sync equals the value on the union of the shards, bit for bit up to float64
summation order. Only what cannot be summed is kept raw (`dist_reduce_fx="cat"`, float32 so that an empty
rank's placeholder has the same dtype): the confidences for equal-mass bins, and the
per-example (confidence, correct) pairs that bootstrap intervals and selective prediction need.

Binning is `first_pl.metrics.functional`'s, shared with `first-pl calibrate`: 10 equal-width
bins, (b/n, (b+1)/n], 0.0 in the first and exactly 1.0 in the last bin; equal-mass bins follow
the split convention of `equal_mass_bin_index` (rank r of N in bin floor(r n / N)).

Edges: with no predictions every metric returns 0 (`n` is 0, so a report can tell "nothing
measured" from "perfect"); a confidence that is NaN or outside [0, 1] (inf included), and a `correct` other than 0/1, are
refused with a ValueError naming `confidence` or `correct`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from first_pl.metrics.functional import (
    calibration_bins,
    check_binning,
    check_norm,
    check_predictions,
    expected_calibration_error,
    expected_calibration_error_from_bins,
)

CONFIDENCES = ("full_vocab", "renormalised")


def _check_n_bins(n_bins: int) -> None:
    if not isinstance(n_bins, int) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")


def _flat_pair(
    confidence: torch.Tensor, correct: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    confidence, correct = confidence.reshape(-1), correct.reshape(-1)
    if confidence.numel() != correct.numel():
        raise ValueError(
            f"confidence ({confidence.numel()}) and correct ({correct.numel()}) differ in length"
        )
    check_predictions(confidence, correct)  # at update, where the caller is, not at compute
    return confidence, correct


def _cat(state: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """A cat state as one tensor (a list before sync, a tensor after; empty when no data)."""
    if isinstance(state, list) and not state:
        return torch.zeros(0)
    return dim_zero_cat(state)


def bins_summary(
    count: torch.Tensor, conf_sum: torch.Tensor, corr_sum: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-bin count, mean confidence and accuracy (fractions); 0 in empty bins (count says so)."""
    safe = count.clamp_min(1.0)
    return {"count": count, "confidence": conf_sum / safe, "accuracy": corr_sum / safe}


def renormalised_candidate_probs(
    candidate_probs: torch.Tensor, candidate_mask: torch.Tensor
) -> torch.Tensor:
    """Candidate probabilities renormalised to sum to 1 over the real candidates.

    Full-vocab probabilities of the option letters need not sum to 1 over the candidates
    (mass leaks to other tokens), so proper scores over the candidates (Brier, NLL) are
    defined on the renormalised distribution. A row with no mass is made uniform.
    """
    mask = candidate_mask.bool()
    probs = candidate_probs.to(torch.float64).clamp_min(0.0) * mask
    total = probs.sum(-1, keepdim=True)
    uniform = mask / mask.sum(-1, keepdim=True).clamp_min(1)
    return torch.where(total > 0, probs / total.clamp_min(1e-300), uniform)


class _BinnedCalibration(Metric):
    """Equal-width bin sums of (confidence, correct); subclasses differ only in `compute`.

    The identical states let a `MetricCollection(compute_groups=True)` update ECE, Trust and
    the reliability bins with one binning pass.
    """

    full_state_update = False
    is_differentiable = False

    def __init__(self, n_bins: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _check_n_bins(n_bins)
        self.n_bins = n_bins
        zeros = torch.zeros(n_bins, dtype=torch.float64)
        self.add_state("count", zeros.clone(), dist_reduce_fx="sum")
        self.add_state("conf_sum", zeros.clone(), dist_reduce_fx="sum")
        self.add_state("corr_sum", zeros.clone(), dist_reduce_fx="sum")

    def update(self, confidence: torch.Tensor, correct: torch.Tensor) -> None:
        """Add predictions: `confidence` [N] of the chosen answer, `correct` [N] bool/0-1."""
        count, conf_sum, corr_sum = calibration_bins(*_flat_pair(confidence, correct), self.n_bins)
        self.count += count
        self.conf_sum += conf_sum
        self.corr_sum += corr_sum


class ExpectedCalibrationError(Metric):
    """ECE as a fraction in [0, 1] (multiply by 100 for the paper's tables).

    `binning="equal_width"` keeps only per-bin sums; `"equal_mass"` needs every confidence to
    place the bin edges, so it keeps the raw values (cat states) and bins at `compute`.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = False

    def __init__(
        self, n_bins: int = 10, binning: str = "equal_width", norm: str = "l1", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        _check_n_bins(n_bins)
        check_binning(binning)
        check_norm(norm)
        self.n_bins, self.binning, self.norm = n_bins, binning, norm
        if binning == "equal_width":
            zeros = torch.zeros(n_bins, dtype=torch.float64)
            self.add_state("count", zeros.clone(), dist_reduce_fx="sum")
            self.add_state("conf_sum", zeros.clone(), dist_reduce_fx="sum")
            self.add_state("corr_sum", zeros.clone(), dist_reduce_fx="sum")
        else:
            self.add_state("confidence", [], dist_reduce_fx="cat")
            self.add_state("correct", [], dist_reduce_fx="cat")

    def update(self, confidence: torch.Tensor, correct: torch.Tensor) -> None:
        """Add predictions: `confidence` [N] of the chosen answer, `correct` [N] bool/0-1."""
        confidence, correct = _flat_pair(confidence, correct)
        if self.binning == "equal_width":
            count, conf_sum, corr_sum = calibration_bins(confidence, correct, self.n_bins)
            self.count += count
            self.conf_sum += conf_sum
            self.corr_sum += corr_sum
        else:
            self.confidence.append(confidence.float())
            self.correct.append(correct.float())

    def compute(self) -> torch.Tensor:
        if self.binning == "equal_width":
            return expected_calibration_error_from_bins(
                self.count, self.conf_sum, self.corr_sum, self.norm
            )
        confidence, correct = _cat(self.confidence), _cat(self.correct)
        return expected_calibration_error(confidence, correct, self.n_bins, self.norm, self.binning)


class ReliabilityBins(_BinnedCalibration):
    """Per-bin count, mean confidence and accuracy (fractions) for a reliability diagram."""

    def compute(self) -> dict[str, torch.Tensor]:
        return bins_summary(self.count, self.conf_sum, self.corr_sum)


class TrustScore(_BinnedCalibration):
    """Trust = accuracy% - ECE% (equal-width, L1), in percent as in the paper's Table 1."""

    higher_is_better = True

    def compute(self) -> torch.Tensor:
        accuracy = self.corr_sum.sum() / self.count.sum().clamp_min(1.0)
        ece = expected_calibration_error_from_bins(self.count, self.conf_sum, self.corr_sum)
        return 100.0 * (accuracy - ece)


class _CandidateScore(Metric):
    """Mean of a per-example score over the candidates renormalised to sum to 1."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(
        self, candidate_probs: torch.Tensor, candidate_mask: torch.Tensor, gold: torch.Tensor
    ) -> None:
        """`candidate_probs` [B, C] full-vocab probs, `candidate_mask` [B, C], `gold` [B]."""
        probs = renormalised_candidate_probs(candidate_probs, candidate_mask)
        self.total += self.score(probs, gold.long()).sum()
        self.n += probs.shape[0]

    @staticmethod
    def score(probs: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def compute(self) -> torch.Tensor:
        return self.total / self.n.clamp_min(1.0)


class CandidateBrierScore(_CandidateScore):
    """Multi-class Brier score sum_c (p_c - 1[c = gold])^2 in [0, 2], on probabilities
    renormalised over the real candidates (padding candidates count as absent)."""

    @staticmethod
    def score(probs: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
        one_hot = torch.zeros_like(probs).scatter_(-1, gold.unsqueeze(-1), 1.0)
        return (probs - one_hot).square().sum(-1)


class CandidateNLL(_CandidateScore):
    """Negative log-likelihood of the gold option, on probabilities renormalised over the real
    candidates; a zero probability is clamped to 1e-12 so one example cannot make it infinite."""

    @staticmethod
    def score(probs: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
        return -probs.gather(-1, gold.unsqueeze(-1)).squeeze(-1).clamp_min(1e-12).log()


class MultipleChoiceCalibration(Metric):
    """Everything the evaluation reports from a stream of `EvalOutput` dicts, in one pass.

    `compute()` returns `acc`, `ece`, `trust` (percent), `brier`, `nll` (renormalised over the
    candidates), `n`, `bins` (count, mean confidence, accuracy as fractions) and the synced raw
    `confidence` / `correct` for bootstrap intervals and selective prediction.

    `confidence="full_vocab"` (the paper's, default) takes `EvalOutput["confidence"]`, the
    chosen candidate's full-vocab probability; `"renormalised"` uses its probability
    renormalised over the candidates instead.
    """

    full_state_update = False
    is_differentiable = False

    def __init__(self, n_bins: int = 10, confidence: str = "full_vocab", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _check_n_bins(n_bins)
        if confidence not in CONFIDENCES:
            raise ValueError(f"confidence must be one of {CONFIDENCES}, got {confidence!r}")
        self.n_bins, self.confidence_kind = n_bins, confidence
        zeros = torch.zeros(n_bins, dtype=torch.float64)
        scalar = torch.zeros((), dtype=torch.float64)
        for name, init in (("count", zeros), ("conf_sum", zeros), ("corr_sum", zeros)):
            self.add_state(name, init.clone(), dist_reduce_fx="sum")
        for name in ("brier_sum", "nll_sum"):
            self.add_state(name, scalar.clone(), dist_reduce_fx="sum")
        self.add_state("confidence", [], dist_reduce_fx="cat")
        self.add_state("correct", [], dist_reduce_fx="cat")

    def update(self, output: Mapping[str, Any]) -> None:
        """Add one `EvalOutput` (keys candidate_probs, candidate_mask, gold, pred, confidence,
        correct; see docs/ARCHITECTURE.md)."""
        gold = output["gold"].long()
        correct = output["correct"].reshape(-1).to(torch.float64)
        probs = renormalised_candidate_probs(output["candidate_probs"], output["candidate_mask"])
        if self.confidence_kind == "full_vocab":
            confidence = output["confidence"].reshape(-1).to(torch.float64)
        else:
            confidence = probs.gather(-1, output["pred"].long().unsqueeze(-1)).squeeze(-1)
        count, conf_sum, corr_sum = calibration_bins(confidence, correct, self.n_bins)
        self.count += count
        self.conf_sum += conf_sum
        self.corr_sum += corr_sum
        self.brier_sum += CandidateBrierScore.score(probs, gold).sum()
        self.nll_sum += CandidateNLL.score(probs, gold).sum()
        self.confidence.append(confidence.float())
        self.correct.append(correct.float())

    def compute(self) -> dict[str, Any]:
        n = self.count.sum()
        safe_n = n.clamp_min(1.0)
        acc = self.corr_sum.sum() / safe_n
        ece = expected_calibration_error_from_bins(self.count, self.conf_sum, self.corr_sum)
        return {
            "n": n,
            "acc": 100.0 * acc,
            "ece": 100.0 * ece,
            "trust": 100.0 * (acc - ece),
            "brier": self.brier_sum / safe_n,
            "nll": self.nll_sum / safe_n,
            "bins": bins_summary(self.count, self.conf_sum, self.corr_sum),
            "confidence": _cat(self.confidence),
            "correct": _cat(self.correct),
        }
