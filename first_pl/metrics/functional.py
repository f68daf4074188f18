"""Binned calibration statistics shared by the metrics and by `first-pl calibrate`.

One implementation serves both a single set of predictions (`[N]`) and a whole grid of
candidate transforms at once (`[G, N]`), so choosing a temperature over 60 values is one
vectorised call and can never disagree with the ECE that the metrics report.
"""

from __future__ import annotations

import math

import torch


def equal_width_bin_index(confidence: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Bin of each confidence for `n_bins` equal-width bins on [0, 1].

    Bin b holds (b/n, (b+1)/n]; a confidence of exactly 0.0 falls in the first bin and exactly
    1.0 in the last (torchmetrics' `CalibrationError` gives 1.0 a bin of its own, see
    Lightning-AI/torchmetrics#3510). Values are clamped to [0, 1] first.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    # one new tensor, then in place: this is the hot path of every metric update
    bin_float = confidence.clamp(0.0, 1.0).mul_(n_bins).ceil_().sub_(1.0).clamp_(0, n_bins - 1)
    return bin_float.long()


def equal_mass_bin_index(confidence: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Bin of each confidence for `n_bins` equal-mass (equal-count) bins, over the last dim.

    The split convention: the example of rank r (ascending confidence, stable sort) of N goes
    to bin floor(r n / N). So bins hold floor(N / n) or ceil(N / n) examples, the larger ones
    spread evenly from the lowest confidences up (N = 15, n = 10: bins 0, 2, 4, 6, 8 hold two;
    `numpy.array_split` would put them all first), and with N < n some bins stay empty. Ties on
    a bin edge are split by their order in the input rather than kept together: the bins must
    hold equal counts even when many confidences are exactly 1.0.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    n = confidence.shape[-1]
    order = torch.argsort(confidence, dim=-1, stable=True)
    rank_bin = torch.arange(n, device=confidence.device) * n_bins // max(n, 1)
    index = torch.empty_like(order)
    index.scatter_(-1, order, rank_bin.expand_as(order).contiguous())
    return index


BINNINGS = ("equal_width", "equal_mass")
NORMS = ("l1", "l2", "max")


def check_binning(binning: str) -> None:
    """Raise a ValueError naming the option when `binning` is unknown."""
    if binning not in BINNINGS:
        raise ValueError(f"binning must be one of {BINNINGS}, got {binning!r}")


def check_norm(norm: str) -> None:
    """Raise a ValueError naming the option when `norm` is unknown."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


# A probability computed in float32 (a sum, an exp of a log) can exceed 1 by a few ulp; within
# this slack a confidence is taken as rounding and clamped into its bin, beyond it refused.
CONFIDENCE_SLACK = 1e-6


def check_predictions(confidence: torch.Tensor, correct: torch.Tensor) -> None:
    """Refuse, by name, confidences that are not probabilities and `correct` that is not 0/1.

    Binned, a NaN lands in an arbitrary bin or none, 1.7 or inf is clamped into the last bin as
    if it were 1.0, and correct = 2 counts twice in a bin's accuracy: every figure would be
    wrong without a word.
    """
    if confidence.is_floating_point():
        nan = int(torch.isnan(confidence).sum())
        if nan:
            raise ValueError(
                f"confidence holds {nan} NaN value(s) of {confidence.numel()}; expected probabilities in [0, 1]"
            )
    outside = (confidence < -CONFIDENCE_SLACK) | (confidence > 1 + CONFIDENCE_SLACK)
    if outside.any():
        first = confidence.reshape(-1)[outside.reshape(-1)][0].item()
        raise ValueError(
            f"confidence holds {int(outside.sum())} value(s) of {confidence.numel()} outside "
            f"[0, 1], first {first}; expected probabilities in [0, 1]"
        )
    not_binary = (correct != 0) & (correct != 1)
    if not_binary.any():
        first = correct.reshape(-1)[not_binary.reshape(-1)][0].item()
        raise ValueError(
            f"correct holds {int(not_binary.sum())} value(s) of {correct.numel()} other than "
            f"0 and 1, first {first}; expected booleans or 0/1"
        )


def calibration_bins(
    confidence: torch.Tensor,
    correct: torch.Tensor,
    n_bins: int = 10,
    binning: str = "equal_width",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-bin (count, sum of confidence, sum of correct), equal-width bins by default.

    `confidence` and `correct` have the same shape `[..., N]`; the result has shape
    `[..., n_bins]`, so a leading grid dimension is binned in one scatter. N = 0 gives empty
    bins (and an ECE of 0: no predictions, no calibration gap).
    """
    check_binning(binning)
    if confidence.shape != correct.shape:
        raise ValueError(
            f"confidence {tuple(confidence.shape)} and correct {tuple(correct.shape)} differ in shape"
        )
    check_predictions(confidence, correct)
    conf = confidence.to(torch.float64)
    corr = correct.to(torch.float64)
    lead = conf.shape[:-1]
    # explicit row count: reshape(-1, 0) is ambiguous when there are no predictions
    flat_conf = conf.reshape(math.prod(lead), conf.shape[-1])
    flat_corr = corr.reshape(math.prod(lead), corr.shape[-1])
    rows = flat_conf.shape[0]
    bin_index = equal_width_bin_index if binning == "equal_width" else equal_mass_bin_index
    index = bin_index(flat_conf, n_bins)
    index = index + torch.arange(rows, device=conf.device).unsqueeze(1) * n_bins
    index = index.reshape(-1)
    size = rows * n_bins
    count = torch.zeros(size, dtype=torch.float64, device=conf.device)
    conf_sum = torch.zeros_like(count)
    corr_sum = torch.zeros_like(count)
    count.index_add_(0, index, torch.ones_like(flat_conf).reshape(-1))
    conf_sum.index_add_(0, index, flat_conf.reshape(-1))
    corr_sum.index_add_(0, index, flat_corr.reshape(-1))
    shape = (*lead, n_bins)
    return count.reshape(shape), conf_sum.reshape(shape), corr_sum.reshape(shape)


def expected_calibration_error_from_bins(
    count: torch.Tensor, conf_sum: torch.Tensor, corr_sum: torch.Tensor, norm: str = "l1"
) -> torch.Tensor:
    """ECE (a fraction in [0, 1]) from per-bin sums; empty bins contribute nothing.

    l1: sum_b (n_b / N) |acc_b - conf_b|; l2: sqrt(sum_b (n_b / N) (acc_b - conf_b)^2);
    max: max over non-empty bins of |acc_b - conf_b|.
    """
    check_norm(norm)
    total = count.sum(-1, keepdim=True).clamp_min(1.0)
    safe = count.clamp_min(1.0)
    gap = (corr_sum / safe - conf_sum / safe).abs()
    weight = count / total
    if norm == "l1":
        return (weight * gap).sum(-1)
    if norm == "l2":
        return (weight * gap.square()).sum(-1).sqrt()
    return torch.where(count > 0, gap, torch.zeros_like(gap)).amax(-1)


def expected_calibration_error(
    confidence: torch.Tensor,
    correct: torch.Tensor,
    n_bins: int = 10,
    norm: str = "l1",
    binning: str = "equal_width",
) -> torch.Tensor:
    """ECE as a fraction over the last dimension (equal-width bins unless `binning` says)."""
    bins = calibration_bins(confidence, correct, n_bins, binning)
    return expected_calibration_error_from_bins(*bins, norm=norm)
