"""Reliability diagrams: gap colours by direction, the diagonal, the title, the grid."""

from __future__ import annotations

import matplotlib.colors as mcolors
import pytest

from first_pl.metrics.plots import (
    OVER_CONFIDENT,
    UNDER_CONFIDENT,
    reliability_diagram,
    reliability_grid,
    summary_title,
)

BINS = {
    "count": [0, 0, 9, 173, 377, 373, 342, 358, 368, 0],
    "confidence": [0, 0, 0.28, 0.36, 0.45, 0.55, 0.65, 0.75, 0.85, 0],
    "accuracy": [0, 0, 0.89, 0.63, 0.59, 0.64, 0.6, 0.62, 0.59, 0],
}
SUMMARY = {"acc": 61.4, "ece": 14.9, "trust": 46.5}


def test_diagram_colours_gaps_by_direction(tmp_path):
    fig = reliability_diagram(BINS, SUMMARY, title="val / toy")
    ax, hist_ax = fig.axes
    assert ax.get_title() == "val / toy\nAcc 61.4 | ECE 14.9 | Trust 46.5"
    gap_bars = [p for p in ax.patches if p.get_hatch() == "//" and p.get_height() > 0]
    colours = [mcolors.to_hex(p.get_facecolor()) for p in gap_bars]
    # bins 2-5 are under-confident (acc > conf), bins 6-8 over-confident
    assert colours == [UNDER_CONFIDENT] * 4 + [OVER_CONFIDENT] * 3
    for bar, b in zip(gap_bars, range(2, 9), strict=True):
        assert bar.get_height() == pytest.approx(abs(BINS["accuracy"][b] - BINS["confidence"][b]))
    [diagonal] = ax.get_lines()
    assert list(diagonal.get_xdata()) == [0, 1] and list(diagonal.get_ydata()) == [0, 1]
    assert [p.get_height() for p in hist_ax.patches] == BINS["count"]
    reliability_diagram(BINS, SUMMARY, tmp_path / "d" / "one.png")
    assert (tmp_path / "d" / "one.png").stat().st_size > 10_000


def test_grid_has_one_panel_per_run(tmp_path):
    fig = reliability_grid([("Fine-tune", BINS, SUMMARY), ("FIRST", BINS, SUMMARY)])
    assert len(fig.axes) == 4
    assert fig.axes[1].get_title().startswith("FIRST")
    reliability_grid([("a", BINS, SUMMARY)], tmp_path / "grid.png")
    assert (tmp_path / "grid.png").exists()
    with pytest.raises(ValueError, match="panel"):
        reliability_grid([])


def test_summary_title_without_name():
    assert (
        summary_title({"acc": 50, "ece": 5.04, "trust": 44.96}) == "Acc 50.0 | ECE 5.0 | Trust 45.0"
    )
