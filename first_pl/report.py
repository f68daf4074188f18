"""`first-pl report`: runs gathered into a Table-1-style report (Markdown and HTML).

A run is a folder holding the `metrics_test.json` that `CalibrationEvaluation` writes (a
pipeline stage, a `first-pl test` run folder, or an offline W&B run's `files/` folder holding
the same JSON). Each run has a method label (its `stage.json` name, or the folder name) and
every task it was tested on becomes a column group: Acc / ECE / Trust with bootstrap
intervals, a "FIRST to Fine-tune" row of differences, and a grid of reliability diagrams.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from first_pl.metrics.plots import reliability_grid
from first_pl.pipeline.stages import DONE_FILE

METRICS_FILE = "metrics_test.json"
FIGURES = ("acc", "ece", "trust")


class ReportError(ValueError):
    """A run folder that cannot be reported; the message names it."""


@dataclass
class RunResult:
    """One method's test figures per task."""

    method: str
    folder: Path
    tasks: dict[str, dict[str, Any]]


def find_metrics(folder: Path) -> Path:
    """The test metrics JSON in a run folder (directly, or one level down as W&B keeps it)."""
    direct = folder / METRICS_FILE
    if direct.is_file():
        return direct
    found = sorted(folder.glob(f"*/{METRICS_FILE}")) + sorted(folder.glob(f"*/*/{METRICS_FILE}"))
    if not found:
        raise ReportError(
            f"run folder {folder} holds no {METRICS_FILE} (run `first-pl test` on it first)"
        )
    return found[0]


def method_label(folder: Path) -> str:
    """A pipeline stage's recorded name, else the folder's name."""
    done = folder / DONE_FILE
    if done.is_file():
        return json.loads(done.read_text())["name"]
    return folder.name


def load_run(folder: str | Path, method: str | None = None) -> RunResult:
    folder = Path(folder)
    if not folder.is_dir():
        raise ReportError(f"run folder {folder} does not exist")
    path = find_metrics(folder)
    try:
        tasks = json.loads(path.read_text())["tasks"]
    except (json.JSONDecodeError, KeyError) as err:
        raise ReportError(
            f"{path} is not a metrics file written by CalibrationEvaluation: {err}"
        ) from err
    return RunResult(method or method_label(folder), folder, tasks)


def cell(figures: dict[str, Any], key: str) -> str:
    """'78.0 [75.1, 80.9]' with the bootstrap interval when the run has one."""
    value = figures.get(key)
    if value is None:
        return "-"
    interval = figures.get("ci", {}).get(key)
    if interval and interval.get("low") is not None:
        return f"{value:.1f} [{interval['low']:.1f}, {interval['high']:.1f}]"
    return f"{value:.1f}"


def table_rows(
    runs: list[RunResult], tasks: list[str], baseline: str, first: str
) -> list[list[str]]:
    """Rows of the table: one per method, then FIRST minus Fine-tune when both are present."""
    rows = [
        [run.method] + [cell(run.tasks.get(t, {}), k) for t in tasks for k in FIGURES]
        for run in runs
    ]
    by_method = {run.method: run for run in runs}
    if baseline in by_method and first in by_method:
        diffs = []
        for task in tasks:
            ours, theirs = (
                by_method[first].tasks.get(task, {}),
                by_method[baseline].tasks.get(task, {}),
            )
            for key in FIGURES:
                if key in ours and key in theirs:
                    diffs.append(f"{ours[key] - theirs[key]:+.1f}")
                else:
                    diffs.append("-")
        rows.append([f"{first} to {baseline}"] + diffs)
    return rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table border='1' cellpadding='4'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def build_report(
    runs: list[str],
    output_dir: str,
    methods: list[str] | None = None,
    baseline: str = "finetune",
    first: str = "first",
    title: str = "first_pl report",
) -> Path:
    """Write `report.md`, `report.html` and one reliability grid PNG per task; return the .md.

    Args:
        runs: run folders (pipeline stages, `first-pl test` runs, offline W&B run folders).
        methods: labels for the runs, in the same order (default: stage name or folder name).
        baseline, first: the two methods compared in the difference row.
    """
    if methods is not None and len(methods) != len(runs):
        raise ReportError(f"--methods has {len(methods)} labels for {len(runs)} runs")
    results = [load_run(run, methods[i] if methods else None) for i, run in enumerate(runs)]
    if not results:
        raise ReportError("no runs given (--runs)")
    tasks = list(dict.fromkeys(t for r in results for t in r.tasks))
    header = ["method"] + [
        f"{t} {k.capitalize() if k != 'ece' else 'ECE'}" for t in tasks for k in FIGURES
    ]
    rows = table_rows(results, tasks, baseline, first)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = []
    for task in tasks:
        panels = [
            (r.method, r.tasks[task]["bins"], r.tasks[task]) for r in results if task in r.tasks
        ]
        image = out / f"reliability_{task}.png"
        reliability_grid(panels, image)
        images.append(image)
    note = "Acc, ECE and Trust (= Acc - ECE) in percent, with 95% bootstrap intervals."
    counts = ", ".join(f"{t}: n={results[0].tasks.get(t, {}).get('n', '-')}" for t in tasks)
    md = [
        f"# {title}",
        "",
        note,
        f"Test examples per task: {counts}.",
        "",
        markdown_table(header, rows),
        "",
    ]
    md += [f"![{img.stem}]({img.name})" for img in images]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md) + "\n")
    figures = "".join(
        f"<h3>{html.escape(img.stem)}</h3><img src='{img.name}' width='100%'>" for img in images
    )
    (out / "report.html").write_text(
        f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{note} Test examples per task: {html.escape(counts)}.</p>"
        f"{html_table(header, rows)}{figures}</body></html>"
    )
    return md_path
