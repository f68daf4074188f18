"""The whole written report (Markdown and HTML) of a fixed set of runs, byte for byte against the
files in `tests/golden/`: every section kind (head notes, the method table with its constant-answer
and difference rows, answer positions, both confidence kinds, paired comparisons with the
baseline and a further pair, evaluation checks with a flag, learning curves, reliability
diagrams). Rewriting how the report is built must not change a byte of what it writes."""

from __future__ import annotations

import json
from pathlib import Path

from test_report import seeded_runs, write_run
from test_report_positions import record_positions

from first_pl.report import build_report

GOLDEN = Path(__file__).parent / "golden"


def fixture_runs(root: Path) -> list[str]:
    """Two methods over seeds 0 and 1 (seeded_runs), their answer positions, and one run whose
    prompts were cut and whose predictions follow one option position."""
    runs = seeded_runs(root)
    for run in runs:
        record_positions(run, "gen", {"A": 8, "B": 12})
    cut = write_run(root / "ls0", "student-ls", 0, {"gen": ([0.6] * 20, [i % 3 == 0 for i in range(20)])})
    record_positions(cut, "gen", {"A": 8, "B": 12})
    path = cut / "test" / "metrics_test.json"
    data = json.loads(path.read_text())
    data["tasks"]["gen"].update(truncated_examples=3, truncated_tokens=41, prediction_bias=[
        {"kind": "position", "description": "option A in 95% of 20 examples (gold answer: 40%)"}])
    path.write_text(json.dumps(data))
    return [str(r) for r in [*runs, cut]]


def write_fixture_report(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    build_report(fixture_runs(tmp_path / "runs"), str(out),
                 methods=["finetune", "first", "finetune", "first", "ls"], n_resamples=200,
                 pairs=[("ls", "first")], title="golden report")  # fmt: skip
    return out


def test_the_written_report_is_unchanged_byte_for_byte(tmp_path):
    out = write_fixture_report(tmp_path)
    for name in ("report.md", "report.html"):
        assert (out / name).read_text() == (GOLDEN / name).read_text(), name
