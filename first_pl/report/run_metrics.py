"""Reading what `CalibrationEvaluation` leaves in a run folder: the per-task figures of
`metrics_{split}.json` and the learning curve of `val_curve.jsonl`.

One reader for every consumer (the report, the pipeline's stage outputs, the sweep's tables), so
a file that does not hold what the callback writes is refused the same way, naming the file and
the field, wherever it is read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from first_pl.fileio.run_files import CURVE_FILE

# The figures every task entry of a metrics file must hold (the report's tables and diagrams).
REQUIRED = ("n", "acc", "ece", "trust", "bins")


class RunMetricsError(ValueError):
    """A metrics or curve file that is not what CalibrationEvaluation writes; names the file."""


def read_task_metrics(path: Path) -> dict[str, dict[str, Any]]:
    """The `tasks` mapping of a `metrics_{split}.json` (task name -> figures), checked field by
    field."""
    try:
        tasks = json.loads(Path(path).read_text())["tasks"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise RunMetricsError(
            f"{path} is not a metrics file written by CalibrationEvaluation: {err!r}"
        ) from None
    if not isinstance(tasks, dict):
        raise RunMetricsError(
            f"{path}: field 'tasks' must map each task name to its figures (as "
            f"CalibrationEvaluation writes it), got a {type(tasks).__name__}"
        )
    for task, figures in tasks.items():
        missing = [k for k in REQUIRED if not isinstance(figures, dict) or k not in figures]
        if missing:
            raise RunMetricsError(f"{path}: task {task!r} lacks the field(s) {missing}")
    return tasks


def read_curve(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Validation points per task, by step; a step validated twice (a resumed fit) keeps the
    later line. Empty when the run has no curve file."""
    path = Path(folder) / CURVE_FILE
    if not path.is_file():
        return {}
    by_task: dict[str, dict[int, dict[str, Any]]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            point = json.loads(line)
            by_task.setdefault(point["task"], {})[int(point["global_step"])] = point
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise RunMetricsError(
                f"{path}, line {number}: not a learning-curve point written by "
                f"CalibrationEvaluation ({err!r})"
            ) from None
    return {task: [steps[s] for s in sorted(steps)] for task, steps in by_task.items()}
