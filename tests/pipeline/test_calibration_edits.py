"""A calibration.json changed after its calibrate stage wrote it is refused whenever the stage
is reused, so no seed's student reads another parameter than the others."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_teacher_stages import VALIDATION, fake_calibrate

from first_pl.fileio.run_files import STAGE_FILE
from first_pl.pipeline.pipeline import Pipeline
from first_pl.pipeline.stages import StageRunner
from first_pl.pipeline.teacher_stages import calibrate_stage


def calibrate(tmp_path: Path):
    with StageRunner(tmp_path, log=lambda _: None) as runner:
        return calibrate_stage(
            Pipeline(output_dir=str(tmp_path)), runner, "calibrate", "v.h5", [VALIDATION]
        )


def set_parameter(path: Path, value: float) -> None:
    data = json.loads(path.read_text())
    data["parameter"] = data["temperature"] = value
    path.write_text(json.dumps(data, indent=2))


def test_an_edited_calibration_is_refused_until_restored_or_recomputed(tmp_path, monkeypatch):
    calls: list[dict] = []
    monkeypatch.setattr("first_pl.pipeline.teacher_stages.calibrate_store", fake_calibrate(calls))
    ran = calibrate(tmp_path)
    path = Path(ran.path)
    original = path.read_bytes()
    assert calibrate(tmp_path).result == ran.result  # reused as written
    set_parameter(path, 0.9)
    with pytest.raises(
        ValueError, match=r"calibration\.json was changed after the calibrate stage"
    ):
        calibrate(tmp_path)
    path.write_bytes(original)
    assert calibrate(tmp_path).result.parameter == 0.3 and len(calls) == 1
    path.unlink()  # a deleted output: the stage is moved aside and calibrates again
    assert calibrate(tmp_path).result.parameter == 0.3 and len(calls) == 2
    assert list(tmp_path.glob(f"{ran.stage.folder.name}.stale-*"))


def test_a_stage_record_without_a_hash_still_catches_an_edited_parameter(tmp_path, monkeypatch):
    """stage.json of earlier releases records the parameter, not the file's sha256."""
    monkeypatch.setattr("first_pl.pipeline.teacher_stages.calibrate_store", fake_calibrate([]))
    ran = calibrate(tmp_path)
    record_path = ran.stage.folder / STAGE_FILE
    record = json.loads(record_path.read_text())
    del record["outputs"]["sha256"]
    record_path.write_text(json.dumps(record))
    set_parameter(Path(ran.path), 0.3)  # reformatted, same parameter: still the stage's result
    assert calibrate(tmp_path).result.parameter == 0.3
    set_parameter(Path(ran.path), 0.9)
    with pytest.raises(ValueError, match=r"its stage\.json records parameter 0\.3\)"):
        calibrate(tmp_path)
