"""The runs of a report: finding each run's test metrics, its label, seed and curves.

A folder is a run when it holds `metrics_test.json` itself or in a wrapper (`test/` of a
pipeline stage, `files/` of a W&B run); a folder holding several runs (a pipeline's output
folder) yields each of them, labelled by its own folder, never one labelled as the parent.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from first_pl.fileio.run_files import CONFIG_FILE, STAGE_FILE, STALE_MARK, TEST_METRICS_FILE
from first_pl.report.run_metrics import RunMetricsError, read_curve, read_task_metrics

# Folders that hold a run's test files but are not the run: a pipeline stage's test logs, a
# W&B run's files.
RUN_WRAPPERS = ("test", "files")


class ReportError(ValueError):
    """A run folder that cannot be reported; the message names it."""


@dataclass
class RunResult:
    """One run's test figures per task, its seed and its validation curves."""

    method: str
    folder: Path
    tasks: dict[str, dict[str, Any]]
    seed: int | None = None
    metrics_dir: Path | None = None
    curve: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def find_metrics(folder: Path) -> list[Path]:
    """The test metrics JSONs in a folder: its own, else every one up to three levels down."""
    direct = folder / TEST_METRICS_FILE
    if direct.is_file():
        return [direct]
    found = [
        p
        for depth in ("*", "*/*", "*/*/*")
        for p in sorted(folder.glob(f"{depth}/{TEST_METRICS_FILE}"))
    ]
    stale = [p for p in found if STALE_MARK in str(p.relative_to(folder))]
    if stale:  # results the pipeline moved aside when their upstream was recomputed
        warnings.warn(
            f"report: {folder} holds {len(stale)} stale stage result(s) ("
            f"{', '.join(sorted({run_folder(p).name for p in stale}))}); not reported",
            stacklevel=2,
        )
        found = [p for p in found if p not in stale]
    if not found:
        raise ReportError(
            f"run folder {folder} holds no {TEST_METRICS_FILE} (run `first-pl test` on it first)"
        )
    return found


def run_folder(metrics: Path) -> Path:
    parent = metrics.parent
    return parent.parent if parent.name in RUN_WRAPPERS else parent


def method_label(folder: Path) -> str:
    """A pipeline stage's recorded name, else the folder's name."""
    done = folder / STAGE_FILE
    if done.is_file():
        return json.loads(done.read_text())["name"]
    return folder.name


def run_seed(folder: Path) -> int | None:
    """`seed_everything` of the run's config (a pipeline stage's record, or config.yaml)."""
    done = folder / STAGE_FILE
    if done.is_file():
        config = json.loads(done.read_text()).get("settings", {}).get("config", {})
        if "seed_everything" in config:
            return config["seed_everything"]
    saved = folder / CONFIG_FILE
    if saved.is_file():
        import yaml

        value = (yaml.safe_load(saved.read_text()) or {}).get("seed_everything")
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    return None


def load_run(metrics: Path, method: str | None = None, seed: int | None = None) -> RunResult:
    folder = run_folder(metrics)
    try:
        tasks = read_task_metrics(metrics)
    except RunMetricsError as err:
        raise ReportError(str(err)) from None
    return RunResult(
        method or method_label(folder),
        folder,
        tasks,
        seed if seed is not None else run_seed(folder),
        metrics.parent,
        read_curve(folder) or read_curve(metrics.parent),
    )


def expand_runs(
    runs: list[str], methods: list[str] | None, seeds: list[int] | None
) -> list[RunResult]:
    """Every run of the given folders; a folder holding several runs gives each of them."""
    for name, labels in (("--methods", methods), ("--seeds", seeds)):
        if labels is not None and len(labels) != len(runs):
            raise ReportError(f"{name} has {len(labels)} entries for {len(runs)} runs")
    results = []
    for i, run in enumerate(runs):
        folder = Path(run)
        if not folder.is_dir():
            raise ReportError(f"run folder {folder} does not exist")
        found = find_metrics(folder)
        if len(found) > 1:
            names = ", ".join(str(run_folder(p).relative_to(folder)) for p in found)
            if methods is not None or seeds is not None:
                raise ReportError(
                    f"run folder {folder} holds {len(found)} runs ({names}); give each as its "
                    "own --runs entry to label it with --methods / --seeds"
                )
            warnings.warn(
                f"report: {folder} holds {len(found)} runs, each reported: {names}", stacklevel=2
            )
        for path in found:
            results.append(
                load_run(path, methods[i] if methods else None, seeds[i] if seeds else None)
            )
    return results


def check_comparable(results: list[RunResult], tasks: list[str]) -> None:
    """Refuse runs a report would mix up: two runs of one method and seed (one would be
    dropped from the seed statistics and the pairing, though counted), and runs of a task
    tested on different examples (recorded `examples_fingerprint`; a run written before it was
    recorded cannot be checked). Pairing them by example id would compare different questions
    under one id."""
    seen: dict[tuple[str, int | None], RunResult] = {}
    for result in results:
        other = seen.setdefault((result.method, result.seed), result)
        if other is not result:
            raise ReportError(
                f"runs {other.folder} and {result.folder} are both method {result.method!r} "
                f"seed {result.seed}: give each its own --methods label, or its seed with --seeds"
            )
    for task in tasks:
        by_print: dict[str, list[Path]] = {}
        for result in results:
            fingerprint = result.tasks.get(task, {}).get("examples_fingerprint")
            if fingerprint is not None:
                by_print.setdefault(fingerprint, []).append(result.folder)
        if len(by_print) > 1:
            sets = "; ".join(
                f"examples {fingerprint} in {', '.join(map(str, folders))}"
                for fingerprint, folders in by_print.items()
            )
            raise ReportError(
                f"task {task!r} was tested on different test sets ({sets}); a report compares "
                "runs on one test set: report these runs apart (or test them on the same data)"
            )
