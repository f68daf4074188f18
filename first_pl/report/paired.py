"""The report's paired comparisons: each run's per-example predictions, paired with the other
method's run of the same seed, and compared by `first_pl.metrics.paired` (the statistics).

A run's `predictions/test_<task>.csv` (written by `CalibrationEvaluation`) holds each example's
confidence (the task's own kind) and whether it was right; two runs are paired on the example
ids they share. Only seeds that both methods ran are paired: a seed's student is compared
with the baseline student that drew the same batches.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from first_pl.fileio.run_files import predictions_file
from first_pl.metrics.paired import PairedDifference, paired_comparison

Predictions = dict[str, tuple[float, bool]]  # example id -> (confidence, correct)


def read_predictions(metrics_dir: Path, task: str) -> Predictions:
    """The test predictions of one task in a run, or a ValueError naming the missing file."""
    path = metrics_dir / predictions_file("test", task)
    if not path.is_file():
        raise ValueError(
            f"{path} does not exist: a paired comparison needs each run's per-example "
            "predictions (written by `first-pl test` with evaluation.write_files true)"
        )
    with path.open(newline="") as handle:
        try:
            return {
                row["example_id"]: (float(row["confidence"]), row["correct"] == "1")
                for row in csv.DictReader(handle)
            }
        except (KeyError, ValueError) as err:
            raise ValueError(
                f"{path} is not a predictions file of CalibrationEvaluation: {err!r}"
            ) from None


@dataclass
class Paired:
    """One method against the baseline on one task."""

    method: str
    task: str
    seeds: list[int | None]
    n: int
    figures: dict[str, PairedDifference]


def compare(
    method: str,
    task: str,
    ours: dict[int | None, Predictions],
    baseline: dict[int | None, Predictions],
    n_resamples: int = 1000,
    seed: int = 0,
) -> Paired | None:
    """Pair `ours` and `baseline` (seed -> predictions) on shared seeds and example ids.

    A single run on each side is paired whatever its seed. Returns None, with a warning, when
    no seed or no example is shared.
    """
    if len(ours) == 1 and len(baseline) == 1:
        pairs = [(next(iter(ours.values())), next(iter(baseline.values())))]
        seeds = list(ours)
    else:
        seeds = [s for s in ours if s in baseline]
        pairs = [(ours[s], baseline[s]) for s in seeds]
    if not pairs:
        warnings.warn(
            f"report: {method} and the baseline share no seed on {task} "
            f"({sorted(map(str, ours))} vs {sorted(map(str, baseline))}); no paired comparison",
            stacklevel=2,
        )
        return None
    ids = sorted(set.intersection(*(set(a) & set(b) for a, b in pairs)))
    if not ids:
        warnings.warn(f"report: {method} and the baseline share no {task} example", stacklevel=2)
        return None
    if any(len(a) != len(ids) or len(b) != len(ids) for a, b in pairs):
        warnings.warn(
            f"report: {method} vs the baseline on {task}: only the {len(ids)} examples both "
            "runs were tested on are paired (the runs were tested on different examples)",
            stacklevel=2,
        )

    def grid(runs: list[Predictions], column: int) -> torch.Tensor:
        return torch.tensor([[run[i][column] for i in ids] for run in runs], dtype=torch.float64)

    a, b = [a for a, _ in pairs], [b for _, b in pairs]
    figures = paired_comparison(
        grid(a, 0), grid(a, 1), grid(b, 0), grid(b, 1),
        n_resamples=n_resamples, n_permutations=n_resamples, seed=seed,
    )  # fmt: skip
    return Paired(method, task, seeds, len(ids), figures)


def paired_cell(difference: PairedDifference) -> str:
    """'+3.1 [0.4, 5.9] p=0.02'."""
    p = f"{difference.p_value:.3f}" if difference.p_value >= 0.001 else "<0.001"
    exact = " (exact)" if difference.exact else ""
    return f"{difference.point:+.1f} [{difference.low:+.1f}, {difference.high:+.1f}] p={p}{exact}"
