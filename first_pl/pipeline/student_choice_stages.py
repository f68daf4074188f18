"""The stages of a student choice (`student_choice.py`): one short student per grid value,
validated only, and the choice among them.

Each grid student is the pipeline's own student stage (`Pipeline.train_student`, given as
`train_student`; as the sweep trains its grid, with its `GridPoint` naming and overriding the
parameter) in its
`validate_only` form: `steps` steps from the job's seed, one validation at the last step on the
training task's validation split, no checkpoint, no test (a FIRST grid student lists the
teacher's `calibrate` stage upstream like every FIRST student, though its number c makes it
unused). The choice stage (`choice-c`, `choice-delta`) reads only those validation figures
and the teacher's validation store, and writes `calibration.json` in the format of `first-pl
calibrate` (objective `student_trust`), so the chosen student reads it through `temperature:
auto` / `delta: auto` like any calibration.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from first_pl.data.store import TeacherStore
from first_pl.fileio.atomic import atomic_write
from first_pl.fileio.run_files import CALIBRATION_FIGURE, CALIBRATION_FILE
from first_pl.pipeline.files import deep_merge, load_yaml
from first_pl.pipeline.settings import PipelineSettings
from first_pl.pipeline.stages import StageResult, StageRunner
from first_pl.pipeline.student_choice import ChoiceSpec
from first_pl.pipeline.students import GridPoint, TrainStudent
from first_pl.teacher.choose_on_store import store_arrays
from first_pl.teacher.parameter_choice import (
    STORE_FIELDS,
    CalibrationResult,
    plot_calibration_curve,
)
from first_pl.teacher.parameter_search import choose_parameter

OBJECTIVE = "student_trust"
TIE_BREAK = "the best validation Trust; ties: the lower validation ECE, then the earlier grid value"
TEACHER_FIGURES = (
    "ece_before, ece_after, accuracy and n_positions are the teacher's on its validation store "
    "(store): untransformed, and transformed with the chosen value"
)


def choose_by_students(
    pipeline: PipelineSettings,
    train_student: TrainStudent,
    runner: StageRunner,
    up: Mapping[str, StageResult],
) -> dict[str, StageResult]:
    """The choice stage of each parameter the students choose, by stage name (none without
    `student_choice`); `train_student` trains the grid students."""
    steps = pipeline.student_choice.steps if pipeline.student_choice else 0
    return {
        spec.stage: choice_stage(pipeline, train_student, runner, up, spec, values, steps)
        for spec, values in pipeline.choices()
    }


def tail_bucket(pipeline: PipelineSettings, spec: ChoiceSpec) -> bool:
    """Whether the base student trains with the tail bucket: its grid and its choice do too."""
    base = pipeline.students[spec.base]
    init = deep_merge(load_yaml(base.config), base.overrides)["model"]["init_args"]
    return bool(init.get("tail_bucket", False))


def grid_students(
    pipeline: PipelineSettings,
    train_student: TrainStudent,
    runner: StageRunner,
    up: Mapping[str, StageResult],
    spec: ChoiceSpec,
    values: list[float],
    steps: int,
) -> list[tuple[float, StageResult]]:
    """One validated-only student per value (`choice-<method>-<parameter><value>`), each
    trained `steps` steps."""
    tail = tail_bucket(pipeline, spec)
    base = pipeline.students[spec.base]
    grid = []
    for value in values:
        point = GridPoint(spec.base, spec.transform, spec.argument, value, tail)
        student = train_student(
            runner, f"choice-{point.name}", spec.base, point.train_stage(base, steps), up,
            validate_only=True,
        )  # fmt: skip
        grid.append((value, student))
    return grid


def grid_rows(grid: list[tuple[float, StageResult]]) -> list[dict[str, Any]]:
    """Each grid student's validation figures (fractions, as a calibration curve has them)."""
    rows = []
    for value, student in grid:
        ((task, figures),) = student.outputs["metrics"].items()  # the training task only
        rows.append({"value": value, "stage": student.folder.name, "task": task,
                     "n": figures["n"], **{k: figures[k] / 100 for k in ("acc", "ece", "trust")}})  # fmt: skip
    return rows


def best_row(rows: list[dict[str, Any]]) -> int:
    """The index of the chosen row (`TIE_BREAK`)."""
    return min(range(len(rows)), key=lambda i: (-rows[i]["trust"], rows[i]["ece"], i))


def student_choice_result(
    spec: ChoiceSpec, rows: list[dict[str, Any]], teacher: CalibrationResult, steps: int
) -> CalibrationResult:
    """The choice as `first-pl calibrate` writes one: the parameter of the best row, the
    students' validation Trust as the curve, every row (stage, Acc, ECE, Trust) in settings;
    `ece_before`, `ece_after`, `accuracy` and `n_positions` keep their meaning, the teacher's
    on its validation store (`teacher`: that store scored at the chosen value)."""
    best = rows[best_row(rows)]
    # the validation store's identity (STORE_FIELDS) too: a student reading the choice checks it
    kept = ("parameter_name", "range", "n_bins", "answer_only", "store", *STORE_FIELDS)
    settings = {**{k: teacher.settings[k] for k in kept if k in teacher.settings},
                "split": "validation", "validated_on": best["task"], "steps": steps, "students": rows,
                "tie_break": TIE_BREAK, "teacher_figures": TEACHER_FIGURES}  # fmt: skip
    return CalibrationResult(
        parameter=best["value"],
        objective=OBJECTIVE,
        value=best["trust"],
        curve=sorted((r["value"], r["trust"]) for r in rows),
        ece_before=teacher.ece_before,
        ece_after=teacher.ece_after,
        accuracy=teacher.accuracy,
        n_positions=teacher.n_positions,
        settings=settings,
        transform=spec.transform,
        tail_bucket=teacher.tail_bucket,
    )


def teacher_at(
    store: str, spec: ChoiceSpec, value: float, answer_only: bool, tail: bool
) -> CalibrationResult:
    """The teacher's validation figures at `value`: calibrate's search over that one value."""
    teacher_store = TeacherStore(store)
    try:
        probs, ids, gold, answer_mask = store_arrays(teacher_store)
        identity = {name: getattr(teacher_store.metadata, name) for name in STORE_FIELDS}
    finally:
        teacher_store.close()
    result = choose_parameter(
        probs, ids, gold, transform=spec.transform, coarse=[value], fine_radius=0.0,
        answer_mask=answer_mask, answer_only=answer_only, tail_bucket=tail,
    )  # fmt: skip
    result.settings["store"] = str(Path(store).resolve())
    result.settings.update(identity)
    return result


def choice_stage(
    pipeline: PipelineSettings,
    train_student: TrainStudent,
    runner: StageRunner,
    up: Mapping[str, StageResult],
    spec: ChoiceSpec,
    values: list[float],
    steps: int,
) -> StageResult:
    """`choice-c` / `choice-delta`: the grid's students, then the choice among them."""
    grid = grid_students(pipeline, train_student, runner, up, spec, values, steps)
    tail = tail_bucket(pipeline, spec)
    validation = up["extract-validation"]

    def body(folder: Path) -> dict[str, Any]:
        rows = grid_rows(grid)
        chosen = rows[best_row(rows)]["value"]
        answer_only = pipeline.calibrate_answer_only
        teacher = teacher_at(validation.outputs["store"], spec, chosen, answer_only, tail)
        result = student_choice_result(spec, rows, teacher, steps)
        atomic_write(folder / CALIBRATION_FIGURE, lambda tmp: plot_calibration_curve(result, tmp))
        atomic_write(folder / CALIBRATION_FILE, result.to_json)
        return {"calibration": str(folder / CALIBRATION_FILE), "parameter": result.parameter}

    settings = {"objective": OBJECTIVE, "answer_only": pipeline.calibrate_answer_only}
    return runner.run(spec.stage, settings, body, [*(s for _, s in grid), validation])
