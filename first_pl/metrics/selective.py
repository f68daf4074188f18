"""Selective prediction: how accuracy rises as low-confidence answers are abstained on.

A calibrated model is not automatically a good ranker of its own mistakes (a constant
confidence equal to the accuracy has ECE 0 and AUROC 0.5), so these complement ECE.
"""

from __future__ import annotations

import torch

from first_pl.metrics.functional import check_predictions


def accuracy_coverage_curve(
    confidence: torch.Tensor, correct: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Accuracy of the answers kept as the confidence threshold rises.

    Returns `(threshold, coverage, accuracy)`, one point per distinct confidence, in order of
    decreasing threshold (increasing coverage): keeping the examples with confidence >=
    threshold[i] covers coverage[i] of them at accuracy[i]. Tied confidences are kept or
    dropped together, so no point depends on the order of ties.
    """
    check_predictions(confidence, correct)
    confidence = confidence.reshape(-1).to(torch.float64)
    correct = correct.reshape(-1).to(torch.float64)
    n = confidence.numel()
    if n == 0:
        empty = torch.zeros(0, dtype=torch.float64)
        return empty, empty, empty
    order = torch.argsort(confidence, descending=True, stable=True)
    conf_sorted = confidence[order]
    hits = correct[order].cumsum(0)
    threshold, counts = torch.unique_consecutive(conf_sorted, return_counts=True)
    last = counts.cumsum(0) - 1
    kept = (last + 1).to(torch.float64)
    return threshold, kept / n, hits[last] / kept


def confidence_auroc(confidence: torch.Tensor, correct: torch.Tensor) -> float:
    """AUROC of confidence as a score for correctness (Mann-Whitney U, ties count one half).

    The probability that a random correct answer has higher confidence than a random wrong
    one; NaN when every answer is right or every answer is wrong (the ranking is undefined).
    """
    check_predictions(confidence, correct)
    confidence = confidence.reshape(-1).to(torch.float64)
    positive = correct.reshape(-1).bool()
    n_pos = int(positive.sum())
    n_neg = positive.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    values, inverse, counts = torch.unique(confidence, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).to(torch.float64)
    mean_rank = ends - (counts.to(torch.float64) - 1) / 2
    rank_sum = mean_rank[inverse][positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
