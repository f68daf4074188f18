"""Selective prediction: how accuracy rises as low-confidence answers are abstained on.

A calibrated model is not automatically a good ranker of its own mistakes (a constant
confidence equal to the accuracy has ECE 0 and AUROC 0.5), so these complement ECE.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torchmetrics.functional.classification import binary_auroc

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
    """AUROC of confidence as a score for correctness (ties count one half), by torchmetrics.

    The probability that a random correct answer has higher confidence than a random wrong
    one; NaN when every answer is right or every answer is wrong, or there is none (the ranking
    is undefined: torchmetrics would return 0 with a warning, a value a table would print).
    """
    check_predictions(confidence, correct)
    positive = correct.reshape(-1).long()
    n_pos = int(positive.sum())
    if n_pos == 0 or n_pos == positive.numel():
        return float("nan")
    with _default_dtype(torch.float64):
        auroc = binary_auroc(
            confidence.reshape(-1).to(torch.float64), positive, validate_args=False
        )
    return float(auroc)


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """torchmetrics divides its integer true/false-positive counts in the default dtype: under
    float32 the AUROC is off by ~1e-8 from the exact Mann-Whitney value, under float64 by ~1e-16."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
