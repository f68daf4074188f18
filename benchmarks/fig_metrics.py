"""Metric figures: ECE + Trust + reliability bins against torchmetrics, and `calibrate`'s cost.

ECE: a `MetricCollection(compute_groups=True)` of ExpectedCalibrationError, TrustScore and
ReliabilityBins, update + compute, reused across repeats with `reset()` (as the evaluation
callback's metrics live across epochs: once the compute group is known, one binning pass feeds
all three); also built afresh each time (the first update bins once per metric while
torchmetrics discovers the group), reported in the detail. Reference:
`BinaryCalibrationError(n_bins=10, norm="l1")`, update + compute.

calibrate: `choose_parameter` (the function behind `first-pl calibrate`) on synthetic top-k
rows with a coarse grid of `calibrate_values` temperatures (plus its fine grid).
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryCalibrationError

from benchmarks.common import Goal, Row, interleaved_seconds, median_seconds
from benchmarks.workbench import Workbench, synthetic_topk
from first_pl.metrics.calibration import ExpectedCalibrationError, ReliabilityBins, TrustScore
from first_pl.teacher.parameter_search import choose_parameter


def predictions(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` confidences in [0, 1] and correctness drawn with that probability (calibrated)."""
    g = torch.Generator().manual_seed(seed)
    confidence = torch.rand(n, generator=g)
    return confidence, torch.rand(n, generator=g) < confidence


def our_collection() -> MetricCollection:
    return MetricCollection(
        {"ece": ExpectedCalibrationError(), "trust": TrustScore(), "bins": ReliabilityBins()},
        compute_groups=True,
    )


def metric_seconds(n: int, repeats: int) -> dict[str, float]:
    """Median seconds of ours (reused, fresh) and torchmetrics' ECE over ``n`` predictions."""
    confidence, correct = predictions(n)
    reused_metrics = our_collection()

    def reused() -> dict:
        reused_metrics.reset()
        reused_metrics.update(confidence, correct)
        return reused_metrics.compute()

    def fresh() -> dict:
        metrics = our_collection()
        metrics.update(confidence, correct)
        return metrics.compute()

    def reference() -> torch.Tensor:
        metric = BinaryCalibrationError(n_bins=10, norm="l1")
        metric.update(confidence, correct.long())
        return metric.compute()

    return interleaved_seconds(
        {"reused": reused, "fresh": fresh, "torchmetrics": reference}, repeats
    )


def metric_rows(bench: Workbench) -> list[Row]:
    s = bench.settings
    t = metric_seconds(s.metric_n, max(s.repeats, 3))
    return [
        Row(
            f"ECE+Trust+bins over {s.metric_n:,} predictions / torchmetrics CalibrationError",
            t["reused"] / t["torchmetrics"],
            goal=Goal("<=", 1.0),
            detail=(
                f"{1e3 * t['reused']:.0f} ms vs {1e3 * t['torchmetrics']:.0f} ms; fresh collection "
                f"{1e3 * t['fresh']:.0f} ms ({t['fresh'] / t['torchmetrics']:.2f}x)"
            ),
        )
    ]


def calibrate_rows(bench: Workbench) -> list[Row]:
    s = bench.settings
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 49152, size=s.calibrate_n)
    ids, probs = synthetic_topk(gold, s.k, 49152, rng)
    wrong = rng.random(s.calibrate_n) > probs[:, 0]  # top-1 right with its own probability
    ids[wrong, 0] = (gold[wrong] + 1) % 49152
    probs = probs.astype(np.float16)  # as the store holds them
    # evenly over Eq. 4's documented range (0, 1]: calibrate refuses values outside it
    coarse = [round(i / s.calibrate_values, 10) for i in range(1, s.calibrate_values + 1)]
    result = choose_parameter(probs, ids, gold, coarse=coarse)
    seconds = median_seconds(
        lambda: choose_parameter(probs, ids, gold, coarse=coarse), max(1, s.repeats // 2)
    )
    return [
        Row(
            f"calibrate (choose_parameter), {s.calibrate_n:,} positions x {len(result.curve)} c",
            seconds,
            unit="s",
            detail=f"{len(coarse)} coarse + {len(result.curve) - len(coarse)} fine values",
        )
    ]
