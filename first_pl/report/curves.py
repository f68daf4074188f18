"""Learning curves in a report: each run's validation points, the convergence rule, figures.

`CalibrationEvaluation` appends one JSON line per validation and task to the run's
`val_curve.jsonl` during `fit`. A comparison of methods means something only when every
student has finished learning (a student stopped early is still under-confident, and the order
of the methods can change as it trains on), so the report says for each run whether it has
converged, by a rule it states: the last two validation points differ by at most `acc_tol`
accuracy points and `loss_tol` nats of validation loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

PANELS = (("acc", "Acc (%)"), ("ece", "ECE (%)"), ("trust", "Trust (%)"), ("loss", "loss (nats)"))
STYLES = ("-", "--", ":", "-.")
# Accuracies are multiples of 100/n percent: 100 * 25 / 300 - 100 * 19 / 300 is 2.000000000000001
# in floats, so a change of exactly the tolerance is compared with this much slack.
EPSILON = 1e-9


@dataclass(frozen=True)
class ConvergenceRule:
    """Converged: the last two validation points within `acc_tol` points and `loss_tol` nats."""

    acc_tol: float = 2.0
    loss_tol: float = 0.05

    def __post_init__(self) -> None:
        if self.acc_tol < 0 or self.loss_tol < 0:
            raise ValueError(
                f"converged_acc_tol and converged_loss_tol must be >= 0, got {self.acc_tol}, "
                f"{self.loss_tol}"
            )

    def describe(self) -> str:
        return (
            "A run counts as converged when its last two validation points (in-domain "
            f"validation split) differ by at most {self.acc_tol:g} points of accuracy and "
            f"{self.loss_tol:g} nats of validation loss (the gold option's negative "
            "log-likelihood); with fewer than two points it cannot be judged. Acc change and "
            "loss change are those absolute differences."
        )

    def judge(self, points: list[dict[str, Any]]) -> dict[str, Any]:
        """`{steps, acc, d_acc, d_loss, converged}` of one run's curve on one task."""
        if not points:
            return {"steps": None, "acc": None, "d_acc": None, "d_loss": None, "converged": None}
        last = points[-1]
        result = {"steps": last["global_step"], "acc": last["acc"], "d_acc": None, "d_loss": None}
        if len(points) < 2 or None in (last["loss"], points[-2]["loss"]):
            return {**result, "converged": None}
        d_acc = abs(last["acc"] - points[-2]["acc"])
        d_loss = abs(last["loss"] - points[-2]["loss"])
        converged = d_acc <= self.acc_tol + EPSILON and d_loss <= self.loss_tol + EPSILON
        return {**result, "d_acc": d_acc, "d_loss": d_loss, "converged": converged}


def curve_figure(
    task: str, series: list[tuple[str, int | None, list[dict[str, Any]]]], path: Path
) -> Path:
    """Acc, ECE, Trust and loss against step for every `(method, seed, points)`: one colour
    per method, one line style per seed."""
    figure = Figure(figsize=(16, 3.8))
    axes = figure.subplots(1, len(PANELS))
    methods = list(dict.fromkeys(method for method, _, _ in series))
    seeds = list(dict.fromkeys(seed for _, seed, _ in series))
    colours = matplotlib.colormaps["tab10"]
    for method, seed, points in series:
        steps = [p["global_step"] for p in points]
        colour = colours(methods.index(method) % 10)
        style = STYLES[seeds.index(seed) % len(STYLES)]
        label = method if len(seeds) == 1 else f"{method} (seed {seed})"
        for ax, (key, _) in zip(axes, PANELS, strict=True):
            values = [p.get(key) for p in points]
            ax.plot(steps, values, style, color=colour, marker="o", markersize=3, label=label)
    for ax, (_, name) in zip(axes, PANELS, strict=True):
        ax.set_xlabel("training step")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc="best")
    figure.suptitle(f"validation curves / {task}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path
