"""What every benchmark shares: a result row, goals, and interleaved median timing.

Timing is interleaved (A, B, C, then B, C, A, ...) after one warm-up call of each variant,
because this machine is shared and noisy: a burst of load from another process then hits every
variant of a ratio alike instead of landing on one of them. The order rotates each round so no
variant always follows the same one (a variant that frees a large tensor makes the next one pay
the page faults of re-allocating it).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Goal:
    """A target for a ratio: ``value >= bound`` or ``value <= bound``; None bound = report only."""

    op: str = "report"
    bound: float | None = None

    def __post_init__(self) -> None:
        if self.op not in (">=", "<=", "report"):
            raise ValueError(f"goal op must be '>=', '<=' or 'report', got {self.op!r}")

    def verdict(self, value: float) -> str:
        if self.op == "report" or self.bound is None:
            return "report"
        ok = value >= self.bound if self.op == ">=" else value <= self.bound
        return "PASS" if ok else "MISS"

    def __str__(self) -> str:
        return self.op if self.bound is None else f"{self.op} {self.bound:g}"


@dataclass
class Row:
    """One line of the results table: the figure, its value, its goal and how it was measured."""

    figure: str
    value: float
    unit: str = "x"
    goal: Goal = field(default_factory=Goal)
    detail: str = ""

    @property
    def verdict(self) -> str:
        return self.goal.verdict(self.value)


def interleaved_seconds(
    variants: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, float]:
    """Median wall seconds of each variant over ``repeats`` round-robin calls, warm-up excluded."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        for run in variants.values():
            run()
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def median_seconds(run: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall seconds of one callable (see `interleaved_seconds`)."""
    return interleaved_seconds({"run": run}, repeats, warmup)["run"]
