"""The whole written report (Markdown and HTML) of a fixed set of runs, byte for byte against the
files in `tests/golden/`: every section kind (head notes, the method table with its constant-answer
and difference rows, answer positions, both confidence kinds, paired comparisons with the
baseline and a further pair, evaluation checks with a flag, learning curves, reliability
diagrams). Rewriting how the report is built must not change a byte of what it writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from test_report import seeded_runs, write_run
from test_report_positions import record_positions

from first_pl.pipeline.stage_logging import report_tables
from first_pl.report import Report, build_report
from first_pl.report.blocks import Figures

GOLDEN = Path(__file__).parent / "golden"


def fixture_runs(root: Path) -> list[str]:
    """Two methods over seeds 0 and 1 (seeded_runs), their answer positions, and one run whose
    prompts were cut and whose predictions follow one option position."""
    runs = seeded_runs(root)
    for run in runs:
        record_positions(run, "gen", {"A": 8, "B": 12})
    cut = write_run(
        root / "ls0", "student-ls", 0, {"gen": ([0.6] * 20, [i % 3 == 0 for i in range(20)])}
    )
    record_positions(cut, "gen", {"A": 8, "B": 12})
    path = cut / "test" / "metrics_test.json"
    data = json.loads(path.read_text())
    data["tasks"]["gen"].update(
        truncated_examples=3,
        truncated_tokens=41,
        prediction_bias=[
            {"kind": "position", "description": "option A in 95% of 20 examples (gold answer: 40%)"}
        ],
    )
    path.write_text(json.dumps(data))
    return [str(r) for r in [*runs, cut]]


def write_fixture_report(tmp_path: Path) -> Report:
    return build_report(fixture_runs(tmp_path / "runs"), str(tmp_path / "out"),
                        methods=["finetune", "first", "finetune", "first", "ls"], n_resamples=200,
                        pairs=[("ls", "first")], title="golden report")  # fmt: skip


def markdown_tables(text: str) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The reference: each table of a Markdown report under the slug of the heading above it."""
    tables, heading, block = {}, "", []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append([cell.strip() for cell in line.strip().strip("|").split("|")])
            continue
        if block:
            tables[re.sub(r"[^a-z0-9]+", "_", heading.lower()).strip("_")] = (block[0], block[2:])
        block = []
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
    return tables


def test_the_written_report_is_unchanged_byte_for_byte(tmp_path):
    report = write_fixture_report(tmp_path)
    for name in ("report.md", "report.html"):
        assert (report.folder / name).read_text() == (GOLDEN / name).read_text(), name


def test_wandb_gets_the_tables_and_figures_of_the_markdown(tmp_path):
    """The W&B run logs the report's typed tables: the very tables of report.md, under the
    heading they sit under, and every figure written beside it."""
    report = write_fixture_report(tmp_path)
    logged = {name: (t.columns, t.rows) for name, t in report_tables(report).items()}
    assert logged == markdown_tables((GOLDEN / "report.md").read_text())
    assert list(logged) == ["test_results", "answer_positions", "both_confidence_kinds",
                            "paired_comparison_with_finetune", "paired_comparison_with_first",
                            "evaluation_checks", "learning_curves"]  # fmt: skip
    shown = [p for block in report.blocks if isinstance(block, Figures) for p in block.paths]
    assert sorted(shown) == sorted(report.folder.glob("*.png")) and len(shown) == 2
