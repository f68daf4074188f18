"""The report's answer-position table and its constant-answer baseline row."""

from __future__ import annotations

import json
from pathlib import Path

from test_report import write_run

from first_pl.report import build_report


def record_positions(run: Path, task: str, counts: dict[str, int]) -> None:
    """Add what CalibrationEvaluation records about gold positions to a written run."""
    path = run / "test" / "metrics_test.json"
    data = json.loads(path.read_text())
    best = max(counts, key=lambda k: counts[k])
    data["tasks"][task].update(
        gold_positions=counts,
        constant_answer={"answer": best, "acc": 100 * counts[best] / sum(counts.values())},
    )
    path.write_text(json.dumps(data))


def two_runs(root: Path, second: dict[str, int]) -> list[str]:
    a = write_run(root / "a", "student-finetune", 0, {"gen": ([0.9] * 20, [i < 13 for i in range(20)])})
    b = write_run(root / "b", "student-first", 0, {"gen": ([0.9] * 20, [True] * 20)})
    record_positions(a, "gen", {"A": 7, "B": 13})
    record_positions(b, "gen", second)
    return [str(a), str(b)]


def test_the_report_shows_positions_and_the_constant_answer_row(tmp_path):
    runs = two_runs(tmp_path, {"A": 7, "B": 13})
    text = build_report(runs, str(tmp_path / "out"), methods=["finetune", "first"]).path.read_text()
    assert "## Answer positions" in text
    assert "| gen | 20 | A 7, B 13 | 65.0 (B) |" in text
    assert "| constant answer | 65.0 (B) | - | - |" in text  # fine-tune's 65.0 is no better
    assert "| finetune | 65.0 |" in text


def test_runs_on_splits_with_different_positions_are_warned_and_get_no_baseline(tmp_path):
    runs = two_runs(tmp_path, {"A": 10, "B": 10})
    text = build_report(runs, str(tmp_path / "out"), methods=["finetune", "first"]).path.read_text()
    assert "Warning: gen: the runs were tested on splits with different answer positions (2 distinct)" in text
    assert "| gen | 20 | A 7, B 13 | 65.0 (B) |" in text and "| gen | 20 | A 10, B 10 | 50.0 (A) |" in text
    assert "\n| constant answer |" not in text


def test_runs_that_predate_the_record_are_said_to_lack_it(tmp_path):
    run = write_run(tmp_path / "a", "student-first", 0, {"gen": ([0.9] * 4, [True] * 4)})
    text = build_report([str(run)], str(tmp_path / "out")).path.read_text()
    assert "gen: no run records its answer positions." in text
    assert "\n| constant answer |" not in text


def test_html_report_has_the_positions_table(tmp_path):
    runs = two_runs(tmp_path, {"A": 7, "B": 13})
    build_report(runs, str(tmp_path / "out"), methods=["finetune", "first"])
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<h2>Answer positions</h2>" in html and "<td>gen</td><td>20</td><td>A 7, B 13</td><td>65.0 (B)</td>" in html
