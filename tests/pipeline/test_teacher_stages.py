"""The calibrate stage hands on its `CalibrationResult` in memory (read back only when cached),
its cache key is the one of earlier releases, and `Upstream` lists the stages by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from first_pl.pipeline.pipeline import Pipeline
from first_pl.pipeline.stages import StageResult, StageRunner
from first_pl.pipeline.teacher_stages import calibrate_stage
from first_pl.pipeline.upstream import Calibrated, Upstream
from first_pl.teacher.parameter_choice import CalibrationResult

VALIDATION = StageResult("extract-validation", "k1", Path("."), {"store": "teacher_validation.h5"})


def fake_calibrate(calls: list[dict]):
    """Stands in for `calibrate_store`: writes calibration.json and returns the result."""

    def calibrate(store, output_dir, **options):
        calls.append({"store": store, "output_dir": Path(output_dir), **options})
        result = CalibrationResult(0.3, "ece", 0.02, [(0.1, 0.1), (0.3, 0.02)], 0.1, 0.02, 0.8, 40)
        result.to_json(Path(output_dir) / "calibration.json")
        return result

    return calibrate


def test_calibrate_result_in_memory_when_run_and_read_back_when_cached(tmp_path, monkeypatch):
    calls: list[dict] = []
    monkeypatch.setattr("first_pl.pipeline.teacher_stages.calibrate_store", fake_calibrate(calls))
    pipeline = Pipeline(output_dir=str(tmp_path))
    with StageRunner(tmp_path, log=lambda _: None) as runner:
        ran = calibrate_stage(pipeline, runner, "calibrate", "v.h5", [VALIDATION])
    assert calls == [{"store": "v.h5", "output_dir": tmp_path / "calibrate-4265f35ca957",
                      "objective": "ece", "answer_only": False}]  # fmt: skip
    # the key of the stage before the refactor: a main job's cached calibration is reused
    assert ran.stage.folder == tmp_path / "calibrate-4265f35ca957"
    assert ran.path == str(tmp_path / "calibrate-4265f35ca957" / "calibration.json")
    assert ran.stage.outputs["parameter"] == ran.result.parameter == 0.3

    monkeypatch.setattr(
        "first_pl.pipeline.teacher_stages.calibrate_store", None
    )  # must not run again
    with StageRunner(tmp_path, log=lambda _: None) as runner:
        cached = calibrate_stage(pipeline, runner, "calibrate", "v.h5", [VALIDATION])
    assert cached.stage.cached and cached.result == ran.result


def test_sweep_choice_joins_the_key_and_reaches_calibrate(tmp_path, monkeypatch):
    calls: list[dict] = []
    monkeypatch.setattr("first_pl.pipeline.teacher_stages.calibrate_store", fake_calibrate(calls))
    pipeline = Pipeline(output_dir=str(tmp_path), calibrate_answer_only=True)
    with StageRunner(tmp_path, log=lambda _: None) as runner:
        ran = calibrate_stage(
            pipeline, runner, "calibrate-x", "v.h5", [VALIDATION],
            transform="log_temperature", tail_bucket=True,
        )  # fmt: skip
    # the sweep's calibrate stages keep their keys too (settings with transform and tail bucket)
    assert ran.stage.folder == tmp_path / "calibrate-x-2b3aeb688c51"
    assert calls == [
        {"store": "v.h5", "output_dir": ran.stage.folder, "objective": "ece",
         "answer_only": True, "transform": "log_temperature", "tail_bucket": True}
    ]  # fmt: skip


def test_upstream_is_the_stage_records_by_name_in_order():
    names = ["prepare", "data", "zero-shot", "teacher", "extract-train", "extract-validation",
             "calibrate", "analysis"]  # fmt: skip
    records = {name: StageResult(name, name[:3], Path(name)) for name in names}
    result = CalibrationResult(0.3, "ece", 0.02, [(0.3, 0.02)], 0.1, 0.02, 0.8, 40)
    up = Upstream(*(records[n] for n in names[:6]), Calibrated(records["calibrate"], result),
                  records["analysis"])  # fmt: skip
    assert list(up) == names and len(up) == 8
    assert {**up, "calibrate": records["data"]}["calibrate"] is records["data"]
    assert up["extract-train"] is up.train_store and up["calibrate"] is up.calibration.stage
    with pytest.raises(KeyError, match="student-first"):
        up["student-first"]
