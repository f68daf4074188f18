"""Transforms chosen on validation, compared: for each transform of `Sweep.calibrated`,
`first-pl calibrate --transform <name>` on the validation store, then one student trained with
the parameter it chose (`temperature: auto` / `delta: auto` read it from calibration.json).

Peer codebases each fix one convention; here each transform is tuned the same way (same grid
rules, same objective, same validation positions) before its students are compared on test, so
the comparison is between transforms, not between tuning effort.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from first_pl.pipeline.files import deep_merge
from first_pl.pipeline.settings import PipelineSettings, TrainStage
from first_pl.pipeline.stages import StageResult, StageRunner
from first_pl.pipeline.students import TrainStudent
from first_pl.pipeline.teacher_stages import calibrate_stage
from first_pl.pipeline.upstream import Upstream

TRANSFORM_STUDENT = {  # transform -> (student of Pipeline.students, the init argument set to "auto")
    "prob_temperature": ("first", "temperature"),
    "log_temperature": ("first", "temperature"),
    "label_smoothing": ("ls_distill", "delta"),
}


def calibrated_students(
    settings: PipelineSettings,
    train_student: TrainStudent,
    transforms: list[str],
    tail_buckets: list[bool],
    runner: StageRunner,
    up: Upstream,
) -> Iterator[tuple[StageResult, dict[str, Any]]]:
    """For each of `transforms` and `tail_buckets`: its calibration, and a student (of
    `settings.students`, trained by `train_student`) trained with it."""
    validation = up.validation_store
    for tail in tail_buckets:
        for transform in transforms:
            suffix = f"{transform}{'-tail' if tail else ''}"
            calibration = calibrate_stage(
                settings,
                runner,
                f"calibrate-{suffix}",
                validation.outputs["store"],
                [validation],
                transform=transform,
                tail_bucket=tail,
            )
            method, argument = TRANSFORM_STUDENT[transform]
            base = settings.students[method]
            args = {
                argument: "auto",
                "calibration": calibration.path,
                "tail_bucket": tail,
            }
            if method == "first":
                args["transform"] = transform
            stage = TrainStage(
                base.config,
                base.max_steps,
                deep_merge(base.overrides, {"model": {"init_args": args}}),
            )
            student = train_student(
                runner,
                f"sweep-{method}-{suffix}-auto",
                method,
                stage,
                {**up, "calibrate": calibration.stage},
            )
            point = {
                "method": method,
                "transform": transform,
                "coefficient": f"{argument} (chosen)",
                "value": calibration.result.parameter,
                "tail_bucket": tail,
                "k": None,
            }
            yield student, point
