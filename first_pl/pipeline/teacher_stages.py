"""The stages that read the fine-tuned teacher, one function each: its top-k stores
(`extract_stage`), the choice of the transform's parameter on the validation store
(`calibrate_stage`, also the sweep's per-transform and per-k calibrations) and the analysis
figures (`analysis_stage`, the paper's figures 2 and 3). Shared by every student and every seed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from first_pl.data.qa_datamodule import QADataModule
from first_pl.data.store import TeacherStore
from first_pl.devices import DeviceChoice
from first_pl.fileio.digest import sha256_of
from first_pl.fileio.run_files import CALIBRATION_FILE, STAGE_FILE
from first_pl.methods.loading import load_model
from first_pl.pipeline.files import instantiate, write_yaml
from first_pl.pipeline.settings import PipelineSettings
from first_pl.pipeline.stages import StageResult, StageRunner
from first_pl.pipeline.upstream import Calibrated
from first_pl.runner import run_first_pl
from first_pl.teacher.analysis import (
    COVERAGE_BATCH_SIZE,
    coverage,
    rank_calibration,
    write_coverage,
    write_rank_calibration,
)
from first_pl.teacher.choose_on_store import calibrate_store
from first_pl.teacher.extract_launch import device_for_rank
from first_pl.teacher.parameter_choice import CalibrationResult


def extraction(
    data_section: dict[str, Any], teacher: StageResult, split: str, batch_size: int,
    devices: DeviceChoice, **options: Any,
) -> Callable[[Path], dict[str, Any]]:  # fmt: skip
    """The body of a stage that extracts the teacher's top-k on `split` into
    `<stage>/teacher_<split>.h5` on the device and processes of the trainer's fit and test
    (`devices`; `options`: further `first-pl extract` options, such as k). The store does not
    depend on the process count (rank blocks are merged in order), so neither does the stage's
    key.

    A store already in the folder is an unfinished run's (the stage has no `stage.json`: it was
    killed after the store was published), made perhaps by an earlier teacher: it is replaced
    (`overwrite`, which keeps it until the new one is complete and still resumes a partial one).
    """

    def body(folder: Path) -> dict[str, Any]:
        output = folder / f"teacher_{split}.h5"
        settings = {
            "data": data_section,
            "teacher": teacher.outputs["checkpoint"],
            "output": str(output),
            "split": split,
            **options,
            "batch_size": batch_size,
            "accelerator": devices.accelerator,
            "overwrite": True,
        }
        config = write_yaml(folder / "extract.yaml", settings)
        run_first_pl(["extract", "--config", str(config)], devices.processes, folder / "extract.log")
        return {"store": str(output)}

    return body


def extract_stage(
    pipeline: PipelineSettings, runner: StageRunner, teacher: StageResult, split: str
) -> StageResult:
    """`extract-<split>`: the teacher's top-k on one split of the task, `outputs["store"]`."""
    data_section, batch = pipeline.data_section(), pipeline.extract_batch_size
    body = extraction(data_section, teacher, split, batch, pipeline.devices())
    settings = {"data": data_section, "split": split, "batch": batch}
    return runner.run(f"extract-{split}", settings, body, [teacher])


def calibrate_stage(
    pipeline: PipelineSettings,
    runner: StageRunner,
    name: str,
    store: str,
    after: list[StageResult],
    **choice: Any,
) -> Calibrated:
    """The choice of the transform's parameter on the validation `store` (what `first-pl
    calibrate` runs: `calibrate_store`) as the stage `name`.

    `choice` holds further calibrate options (the sweep's `transform` and `tail_bucket`); they
    join the stage's key, so the pipeline's own stage, which gives none, keeps its key. The
    result is the one `calibrate` returned when the stage ran here, else its `calibration.json`,
    which must be the file the stage wrote (`verified_calibration`).
    """
    chosen: list[CalibrationResult] = []  # filled only when the stage runs in this call

    def body(folder: Path) -> dict[str, Any]:
        chosen.append(
            calibrate_store(
                store,
                folder,
                objective=pipeline.calibrate_objective,
                answer_only=pipeline.calibrate_answer_only,
                **choice,
            )
        )
        path = folder / CALIBRATION_FILE
        return {
            "calibration": str(path),
            "parameter": chosen[0].parameter,
            "sha256": sha256_of(path),
        }

    settings = {
        "objective": pipeline.calibrate_objective,
        "answer_only": pipeline.calibrate_answer_only,
        **choice,
    }
    stage = runner.run(name, settings, body, after)
    return Calibrated(stage, chosen[0] if chosen else verified_calibration(stage))


def verified_calibration(stage: StageResult) -> CalibrationResult:
    """The `calibration.json` of a finished calibrate stage, refused when it is not the file
    the stage wrote (its sha256 is in `stage.json`; records of earlier releases have only the
    parameter). Students read the file when they train, so an edited one would reach the
    students trained from now on and not those already done: it is refused for every one."""
    path = Path(stage.outputs["calibration"])
    redo = (
        f"restore it, or delete {stage.folder} to calibrate again (the students that read it "
        "are then trained again)"
    )
    if not path.is_file():
        raise FileNotFoundError(f"{path}, written by the {stage.name} stage, is missing; {redo}")
    recorded, parameter = stage.outputs.get("sha256"), stage.outputs.get("parameter")
    if recorded is not None:
        changed, what = recorded != sha256_of(path), f"sha256 {recorded}"
    else:
        changed, what = _parameter_in(path) != parameter, f"parameter {parameter}"
    if changed:
        raise ValueError(
            f"{path} was changed after the {stage.name} stage wrote it (its {STAGE_FILE} records "
            f"{what}): students trained before read the old file and students trained now would "
            f"read this one; {redo}"
        )
    return CalibrationResult.from_json(path)


def _parameter_in(path: Path) -> float | None:
    """The parameter a calibration file holds, None when it no longer reads as one."""
    try:
        return CalibrationResult.from_json(path).parameter
    except (ValueError, TypeError, KeyError):  # JSONDecodeError is a ValueError
        return None


def analysis_stage(
    pipeline: PipelineSettings,
    runner: StageRunner,
    teacher: StageResult,
    validation_store: StageResult,
) -> StageResult:
    """`analysis`: figures 2 and 3 of the paper for this teacher, on the validation split (what
    `first-pl coverage` and `first-pl rank-calibration` write, at their defaults)."""

    def body(folder: Path) -> dict[str, Any]:
        data = instantiate(QADataModule, pipeline.data_section(), "data", "a data module")
        model = load_model(teacher.outputs["checkpoint"], "teacher").module.model
        loader = data.split_loader("validation", COVERAGE_BATCH_SIZE)
        coverage_files = write_coverage(
            coverage(model.to(device_for_rank()), loader, max_positions=pipeline.coverage_positions),
            folder,
        )
        store = TeacherStore(validation_store.outputs["store"])
        try:
            rank_files = write_rank_calibration(rank_calibration(store), folder)
        finally:
            store.close()
        return {"coverage": str(coverage_files["json"]), "rank_calibration": str(rank_files["json"])}

    settings = {"positions": pipeline.coverage_positions}
    return runner.run("analysis", settings, body, [teacher, validation_store])
