"""Seeded percentile-bootstrap confidence intervals for Acc, ECE and Trust.

With a few hundred test examples a difference of two points in ECE is within noise
(docs: DESIGN.md section 4), so every reported figure carries an interval. Resamples are
drawn as an index matrix and binned with the same vectorised `[G, N]` code as the point
estimate, in chunks that bound memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from first_pl.metrics.functional import calibration_bins, expected_calibration_error_from_bins

# The three figures of every result (the keys of `acc_ece_trust`), in the order every table and
# log line shows them, and their names there.
FIGURES = ("acc", "ece", "trust")
FIGURE_LABELS = {"acc": "Acc", "ece": "ECE", "trust": "Trust"}
_MAX_CHUNK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class Interval:
    """A point estimate and its (low, high) percentile interval, in percent."""

    point: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def acc_ece_trust(
    confidence: torch.Tensor, correct: torch.Tensor, n_bins: int
) -> dict[str, torch.Tensor]:
    """Acc, ECE and Trust in percent over the last dimension (leading dimensions are kept)."""
    count, conf_sum, corr_sum = calibration_bins(confidence, correct, n_bins)
    acc = corr_sum.sum(-1) / count.sum(-1).clamp_min(1.0)
    ece = expected_calibration_error_from_bins(count, conf_sum, corr_sum)
    return {"acc": 100.0 * acc, "ece": 100.0 * ece, "trust": 100.0 * (acc - ece)}


def bootstrap_ci(
    confidence: torch.Tensor,
    correct: torch.Tensor,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    n_bins: int = 10,
) -> dict[str, Interval]:
    """Percentile bootstrap intervals for `acc`, `ece` and `trust` (percent).

    The same `seed` gives the same intervals; `level` is the central coverage (0.95 takes the
    2.5th and 97.5th percentiles, linearly interpolated). Empty input gives NaN everywhere.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    confidence = confidence.reshape(-1).to(torch.float64)
    correct = correct.reshape(-1).to(torch.float64)
    n = confidence.numel()
    if n == 0:
        nan = float("nan")
        return {key: Interval(nan, nan, nan) for key in FIGURES}
    point = acc_ece_trust(confidence, correct, n_bins)
    generator = torch.Generator().manual_seed(seed)
    chunk = max(1, _MAX_CHUNK_ELEMENTS // n)
    draws: dict[str, list[torch.Tensor]] = {key: [] for key in point}
    for start in range(0, n_resamples, chunk):
        rows = min(chunk, n_resamples - start)
        index = torch.randint(n, (rows, n), generator=generator).to(confidence.device)
        for key, value in acc_ece_trust(confidence[index], correct[index], n_bins).items():
            draws[key].append(value)
    quantiles = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    result = {}
    for key, value in point.items():
        low, high = torch.quantile(torch.cat(draws[key]).cpu(), quantiles).tolist()
        result[key] = Interval(float(value), low, high)
    return result
