"""Transforms chosen on validation, compared: for each transform of `Sweep.calibrated`,
`first-pl calibrate --transform <name>` on the validation store, then one student trained with
the parameter it chose (`temperature: auto` / `delta: auto` read it from calibration.json).

This is the comparison issue 17 asks for: every peer fixes one convention; here each is tuned
the same way (same grid rules, same objective, same validation positions) before its students
are compared on test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from first_pl.fileio.run_files import CALIBRATION_FILE
from first_pl.knowledge.calibration_result import CalibrationResult
from first_pl.pipeline.stages import StageResult, StageRunner

if TYPE_CHECKING:
    from first_pl.pipeline.sweep import Sweep

STRATEGY = {  # transform -> (student of Pipeline.students, the init argument set to "auto")
    "prob_temperature": ("first", "temperature"),
    "log_temperature": ("first", "temperature"),
    "label_smoothing": ("ls_distill", "delta"),
}


def calibrate_stage(
    sweep: Sweep,
    runner: StageRunner,
    name: str,
    store: str,
    after: list[StageResult],
    transform: str = "prob_temperature",
    tail_bucket: bool = False,
) -> StageResult:
    """`first-pl calibrate` of `transform` on the validation `store`, as a cached stage."""
    from first_pl.cli import main

    def body(folder: Path) -> dict[str, Any]:
        main(
            ["calibrate", "--store", store, "--output_dir", str(folder), "--transform", transform]
            + ["--objective", sweep.calibrate_objective, "--tail_bucket", str(tail_bucket).lower()]
            + ["--answer_only", str(sweep.calibrate_answer_only).lower()]
        )
        return {"calibration": str(folder / CALIBRATION_FILE)}

    settings = {
        "objective": sweep.calibrate_objective,
        "answer_only": sweep.calibrate_answer_only,
        "transform": transform,
        "tail_bucket": tail_bucket,
    }
    return runner.run(name, settings, body, after)


def calibrated_students(
    sweep: Sweep, runner: StageRunner, up: dict[str, StageResult]
) -> Iterator[tuple[StageResult, dict[str, Any]]]:
    """For each transform and tail setting: its calibration, and a student trained with it."""
    from first_pl.pipeline.files import deep_merge
    from first_pl.pipeline.offline import TrainStage

    validation = up["extract-validation"]
    for tail in sweep.tail_buckets:
        for transform in sweep.calibrated:
            suffix = f"{transform}{'-tail' if tail else ''}"
            calibration = calibrate_stage(
                sweep,
                runner,
                f"calibrate-{suffix}",
                validation.outputs["store"],
                [validation],
                transform,
                tail,
            )
            method, argument = STRATEGY[transform]
            base = sweep.students[method]
            args = {
                argument: "auto",
                "calibration": calibration.outputs["calibration"],
                "tail_bucket": tail,
            }
            if method == "first":
                args["transform"] = transform
            stage = TrainStage(
                base.config,
                base.max_steps,
                deep_merge(base.overrides, {"model": {"init_args": args}}),
            )
            student = sweep.train_student(
                runner,
                f"sweep-{method}-{suffix}-auto",
                method,
                stage,
                {**up, "calibrate": calibration},
            )
            chosen = CalibrationResult.from_json(calibration.outputs["calibration"]).parameter
            point = {
                "method": method,
                "transform": transform,
                "coefficient": f"{argument} (chosen)",
                "value": chosen,
                "tail_bucket": tail,
                "k": None,
            }
            yield student, point
