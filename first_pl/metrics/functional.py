"""Binned calibration statistics shared by the metrics and by `first-pl calibrate`.

One implementation serves both a single set of predictions (`[N]`) and a whole grid of
candidate transforms at once (`[G, N]`), so choosing a temperature over 60 values is one
vectorised call and can never disagree with the ECE that the metrics report.
"""

from __future__ import annotations

import torch


def equal_width_bin_index(confidence: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Bin of each confidence for `n_bins` equal-width bins on [0, 1].

    Bin b holds (b/n, (b+1)/n]; a confidence of exactly 0.0 falls in the first bin and exactly
    1.0 in the last (torchmetrics' `CalibrationError` gives 1.0 a bin of its own, see
    Lightning-AI/torchmetrics#3510). Values are clamped to [0, 1] first.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    scaled = confidence.clamp(0.0, 1.0) * n_bins
    return (torch.ceil(scaled).long() - 1).clamp(0, n_bins - 1)


def calibration_bins(
    confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = 10
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-bin (count, sum of confidence, sum of correct) for equal-width bins.

    `confidence` and `correct` have the same shape `[..., N]`; the result has shape
    `[..., n_bins]`, so a leading grid dimension is binned in one scatter.
    """
    if confidence.shape != correct.shape:
        raise ValueError(
            f"confidence {tuple(confidence.shape)} and correct {tuple(correct.shape)} differ in shape"
        )
    conf = confidence.to(torch.float64)
    corr = correct.to(torch.float64)
    lead = conf.shape[:-1]
    flat_conf = conf.reshape(-1, conf.shape[-1])
    flat_corr = corr.reshape(-1, corr.shape[-1])
    rows = flat_conf.shape[0]
    index = equal_width_bin_index(flat_conf, n_bins)
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
    total = count.sum(-1, keepdim=True).clamp_min(1.0)
    safe = count.clamp_min(1.0)
    gap = (corr_sum / safe - conf_sum / safe).abs()
    weight = count / total
    if norm == "l1":
        return (weight * gap).sum(-1)
    if norm == "l2":
        return (weight * gap.square()).sum(-1).sqrt()
    if norm == "max":
        return torch.where(count > 0, gap, torch.zeros_like(gap)).amax(-1)
    raise ValueError(f"norm must be one of 'l1', 'l2', 'max', got {norm!r}")


def expected_calibration_error(
    confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = 10, norm: str = "l1"
) -> torch.Tensor:
    """Equal-width-bin ECE as a fraction, over the last dimension."""
    return expected_calibration_error_from_bins(*calibration_bins(confidence, correct, n_bins), norm=norm)
