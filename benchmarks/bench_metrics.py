"""ECE + Trust + reliability bins over 1M predictions against torchmetrics' ECE alone.

    OMP_NUM_THREADS=1 python benchmarks/bench_metrics.py [--n 1000000] [--repeats 7]

Ours: a `MetricCollection(compute_groups=True)` of ExpectedCalibrationError, TrustScore and
ReliabilityBins, update + compute, measured two ways: reused across repeats with `reset()` (as
the evaluation callback's metrics live across epochs: the compute group is known, one binning
pass feeds all three), and built afresh each time (the first update bins once per metric
while torchmetrics discovers the group). Reference: `BinaryCalibrationError(n_bins=10,
norm="l1")`, update + compute. Prints median times after a warm-up and the ratios (goal <= 1.0).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryCalibrationError

from first_pl.metrics.calibration import ExpectedCalibrationError, ReliabilityBins, TrustScore


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    confidence = torch.rand(args.n, generator=g)
    correct = torch.rand(args.n, generator=g) < confidence

    def collection() -> MetricCollection:
        return MetricCollection(
            {"ece": ExpectedCalibrationError(), "trust": TrustScore(), "bins": ReliabilityBins()},
            compute_groups=True,
        )

    def fresh() -> dict:
        metrics = collection()
        metrics.update(confidence, correct)
        return metrics.compute()

    reused_metrics = collection()

    def reused() -> dict:
        reused_metrics.reset()
        reused_metrics.update(confidence, correct)
        return reused_metrics.compute()

    def reference() -> object:
        metric = BinaryCalibrationError(n_bins=10, norm="l1")
        metric.update(confidence, correct.long())
        return metric.compute()

    t_reused = median_seconds(reused, args.repeats)
    t_fresh = median_seconds(fresh, args.repeats)
    t_ref = median_seconds(reference, args.repeats)
    print(f"n={args.n} threads={torch.get_num_threads()} repeats={args.repeats}")
    print(f"ours, reused collection: {1e3 * t_reused:.1f} ms   ECE {float(reused()['ece']):.6f}")
    print(f"ours, fresh collection:  {1e3 * t_fresh:.1f} ms")
    print(
        f"torchmetrics BinaryCalibrationError: {1e3 * t_ref:.1f} ms   ECE {float(reference()):.6f}"
    )
    print(f"ratio reused / torchmetrics: {t_reused / t_ref:.2f} (goal <= 1.0)")
    print(f"ratio fresh / torchmetrics:  {t_fresh / t_ref:.2f}")


if __name__ == "__main__":
    main()
