"""Reliability diagrams as in the paper's figure 4, for one run or several side by side.

Bars are the accuracy of each equal-width confidence bin (blue) with a hatched segment that
spans the gap between the bin's mean confidence and its accuracy (the term ECE weights): red
where the model is under-confident (accuracy > confidence; the blue part then ends at the
confidence and the red part reaches up to the accuracy) and green where it is over-confident
(confidence > accuracy; the green part sits on the blue accuracy bar up to the confidence). A count histogram below shows where the predictions lie, which a
diagram of accuracies alone hides. Uses the Agg backend: no display is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

UNDER_CONFIDENT = "#e06666"
OVER_CONFIDENT = "#6aa84f"
ACCURACY = "tab:blue"

Bins = Mapping[str, Any]
Summary = Mapping[str, float]


def _array(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=float)


def summary_title(summary: Summary, title: str | None = None) -> str:
    """'title\\nAcc 78.0 | ECE 6.9 | Trust 71.1' from a summary in percent."""
    figures = " | ".join(
        f"{label} {float(summary[key]):.1f}"
        for key, label in (("acc", "Acc"), ("ece", "ECE"), ("trust", "Trust"))
        if key in summary
    )
    return f"{title}\n{figures}" if title else figures


def draw_reliability(
    ax: Axes, hist_ax: Axes, bins: Bins, summary: Summary, title: str | None = None
) -> None:
    """Draw one diagram on `ax` and its count histogram on `hist_ax`.

    `bins` has per-bin `count`, `confidence` (mean) and `accuracy` as fractions (the output
    of `ReliabilityBins` / `MultipleChoiceCalibration`); `summary` has acc, ece, trust in %.
    """
    count, confidence, accuracy = (_array(bins[k]) for k in ("count", "confidence", "accuracy"))
    n_bins = count.size
    width = 1.0 / n_bins
    centers = (np.arange(n_bins) + 0.5) * width
    filled = count > 0
    accuracy = np.where(filled, accuracy, 0.0)
    gap = np.where(filled, confidence - accuracy, 0.0)
    ax.bar(centers, accuracy, width, color=ACCURACY, edgecolor="black", label="accuracy")
    colours = [OVER_CONFIDENT if g > 0 else UNDER_CONFIDENT for g in gap]
    bottom = np.minimum(accuracy, accuracy + gap)
    ax.bar(centers, np.abs(gap), width, bottom=bottom, color=colours, edgecolor="black", hatch="//")
    ax.plot([0, 1], [0, 1], linestyle="--", color="black", label="perfect calibration")
    ax.bar([0], [0], color=OVER_CONFIDENT, hatch="//", label="gap, over-confident (conf > acc)")
    ax.bar([0], [0], color=UNDER_CONFIDENT, hatch="//", label="gap, under-confident (acc > conf)")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=summary_title(summary, title))
    ax.legend(loc="upper left", fontsize="small")
    hist_ax.bar(centers, count, width, color="gray", edgecolor="black")
    hist_ax.set(xlim=(0, 1), xlabel="confidence", ylabel="count")


def _figure(n_panels: int) -> tuple[Figure, list[tuple[Axes, Axes]]]:
    fig, axes = plt.subplots(
        2,
        n_panels,
        figsize=(4.2 * n_panels, 5.4),
        squeeze=False,
        sharex="col",
        gridspec_kw={"height_ratios": [3, 1]},
    )
    return fig, [(axes[0, i], axes[1, i]) for i in range(n_panels)]


def _save(fig: Figure, path: str | Path | None) -> Figure:
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


def reliability_diagram(
    bins: Bins, summary: Summary, path: str | Path | None = None, title: str | None = None
) -> Figure:
    """One reliability diagram; saved to `path` (and closed) when given."""
    fig, [(ax, hist_ax)] = _figure(1)
    draw_reliability(ax, hist_ax, bins, summary, title)
    return _save(fig, path)


def reliability_grid(
    panels: Sequence[tuple[str, Bins, Summary]], path: str | Path | None = None
) -> Figure:
    """Side-by-side diagrams of several runs, one `(title, bins, summary)` per panel."""
    if not panels:
        raise ValueError("reliability_grid needs at least one panel")
    fig, axes = _figure(len(panels))
    for (title, bins, summary), (ax, hist_ax) in zip(panels, axes, strict=True):
        draw_reliability(ax, hist_ax, bins, summary, title)
    return _save(fig, path)
