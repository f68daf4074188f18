"""ECE + Trust + reliability bins over 1M predictions against torchmetrics' ECE alone.

    OMP_NUM_THREADS=1 python benchmarks/bench_metrics.py [--n 1000000] [--repeats 7]

The measurement lives in `benchmarks/fig_metrics.py` (also run by `benchmarks/run.py`); this
script prints it alone, with the absolute times.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.fig_metrics import metric_seconds  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    t = metric_seconds(args.n, args.repeats)
    print(f"n={args.n} threads={torch.get_num_threads()} repeats={args.repeats}")
    print(f"ours, reused collection: {1e3 * t['reused']:.1f} ms")
    print(f"ours, fresh collection:  {1e3 * t['fresh']:.1f} ms")
    print(f"torchmetrics BinaryCalibrationError: {1e3 * t['torchmetrics']:.1f} ms")
    print(f"ratio reused / torchmetrics: {t['reused'] / t['torchmetrics']:.2f} (goal <= 1.0)")
    print(f"ratio fresh / torchmetrics:  {t['fresh'] / t['torchmetrics']:.2f}")


if __name__ == "__main__":
    main()
