"""Every benchmark figure runs once on the tiny random model and returns well-formed rows.

No timing is asserted (timings on a shared CI machine are noise); this only keeps
`benchmarks/run.py` from rotting when the library's interfaces change.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import fig_memory, fig_offline_online  # noqa: E402
from benchmarks.common import Row  # noqa: E402
from benchmarks.report import table, write_results  # noqa: E402
from benchmarks.run import FIGURES  # noqa: E402
from benchmarks.workbench import Settings, Workbench  # noqa: E402


@pytest.fixture(scope="module")
def rows(tiny_model_dir) -> list[Row]:
    # The memory and offline/online probes run in-process here: two fresh interpreters importing Lightning would
    # take most of a minute on a loaded CI machine; run.py uses the subprocesses.
    patch = pytest.MonkeyPatch()
    patch.setattr(
        fig_memory,
        "run_probe",
        lambda s, copies: fig_memory.probe(
            s.teacher, s.dtype, s.memory_examples, copies, s.batch_size
        ),
    )
    patch.setattr(fig_offline_online, "run_probe", fig_offline_online.probe)
    settings = Settings(
        teacher=str(tiny_model_dir),
        batch_size=4,
        repeats=1,
        train_size=32,
        metric_n=2000,
        calibrate_n=2000,
        calibrate_values=5,
        memory_examples=4,
        offline_examples=8,
    )
    bench = Workbench(settings)
    try:
        return [row for figure in FIGURES for row in figure(bench)]
    finally:
        bench.close()
        patch.undo()


def test_every_figure_gives_well_formed_rows(rows: list[Row]) -> None:
    assert len(rows) >= len(FIGURES)
    for row in rows:
        assert row.figure and isinstance(row.detail, str)
        assert math.isfinite(row.value) and row.value >= 0
        assert row.verdict in ("PASS", "MISS", "report")


def test_results_file_has_the_table(rows: list[Row], tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    write_results(path, rows, "python benchmarks/run.py", 1.0)
    text = path.read_text()
    assert table(rows) in text and "Machine:" in text
    assert text.count("\n| ") == len(rows) + 1  # header and one line per row


def test_offline_online_rows_cover_each_epoch(rows: list[Row]) -> None:
    offline = [r.figure for r in rows if r.figure.startswith("offline FIRST / online")]
    assert offline == [
        "offline FIRST / online full-vocab KD, total wall time, 1 epoch(s)",
        "offline FIRST / online full-vocab KD, total wall time, 2 epoch(s)",
        "offline FIRST / online full-vocab KD, total wall time, 3 epoch(s)",
        "offline FIRST / online full-vocab KD, peak memory (RSS)",
    ]
    assert not any("online full-vocab KD step" in r.figure for r in rows)  # the old ratio is gone
