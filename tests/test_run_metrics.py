"""The one reader of a run's metrics and learning curve (report and pipeline both use it)."""

from __future__ import annotations

import json
import re

import pytest

from first_pl.report.run_metrics import RunMetricsError, read_curve, read_task_metrics

FIGURES = {"n": 8, "acc": 75.0, "ece": 12.5, "trust": 62.5, "bins": {"count": [8]}}


def test_task_metrics_round_trip_and_refusals_name_the_file_and_field(tmp_path):
    path = tmp_path / "metrics_test.json"
    path.write_text(json.dumps({"split": "test", "tasks": {"gen": {**FIGURES, "nll": 0.7}}}))
    assert read_task_metrics(path) == {"gen": {**FIGURES, "nll": 0.7}}
    path.write_text(json.dumps({"tasks": {"gen": {"acc": 1.0, "n": 2}}}))
    with pytest.raises(
        RunMetricsError,
        match=rf"^{re.escape(str(path))}: task 'gen' lacks the field\(s\) \['ece', 'trust', 'bins'\]$",
    ):
        read_task_metrics(path)
    path.write_text(json.dumps({"tasks": ["gen"]}))
    with pytest.raises(
        RunMetricsError, match="field 'tasks' must map each task name .* got a list"
    ):
        read_task_metrics(path)
    path.write_text("{")
    with pytest.raises(
        RunMetricsError, match="is not a metrics file written by CalibrationEvaluation"
    ):
        read_task_metrics(path)


def test_curve_orders_steps_and_a_resumed_fit_keeps_the_later_point(tmp_path):
    assert read_curve(tmp_path) == {}  # no validation during fit: no curve
    points = [
        {"global_step": 4, "task": "gen", "acc": 50.0},
        {"global_step": 2, "task": "gen", "acc": 40.0},
        {"global_step": 2, "task": "physics", "acc": 30.0},
        {"global_step": 4, "task": "gen", "acc": 55.0},  # the resumed fit validated step 4 again
    ]
    (tmp_path / "val_curve.jsonl").write_text("\n".join(map(json.dumps, points)) + "\n\n")
    assert read_curve(tmp_path) == {"gen": [points[1], points[3]], "physics": [points[2]]}
    (tmp_path / "val_curve.jsonl").write_text(json.dumps(points[0]) + '\n{"task": "gen"}\n')
    with pytest.raises(
        RunMetricsError, match=r"val_curve.jsonl, line 2: not a learning-curve point"
    ):
        read_curve(tmp_path)
