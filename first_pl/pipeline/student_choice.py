"""What the students choose: the teacher transform's parameter chosen by the students' own
validation Trust (pipeline option `student_choice`), beside the choice on the teacher's
validation objective (`calibrate`).

The teacher-side choice scores the transformed teacher; what the students make of a target is a
different question (a sharper c than the teacher's best-calibrated one can give the students a
better Trust). Here each grid value trains a short student, validated once at its last step on
the training task's validation split (never the test split); the value whose student has the
best validation Trust is written as a calibration result (objective `student_trust`) that
`temperature: auto` / `delta: auto` read, so the chosen student trains exactly like its base
method with only the parameter's source changed. The stages: `student_choice_stages.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from first_pl.teacher.transforms import TRANSFORMS


@dataclass
class StudentChoice:
    """The pipeline option `student_choice`: the grids and each grid student's budget.

    For each value of `temperatures` (Eq. 4's c) a FIRST student, and for each of `deltas` a
    Distill w/ LS student, trained `steps` steps from the same start with the job's `first` /
    `ls_distill` config and validated once at its last step; the value whose student has the
    best validation Trust trains the student methods `first_student_c` /
    `ls_distill_student_delta`, beside `first` (c chosen on the teacher's validation ECE).
    An empty list chooses nothing for that parameter.
    """

    temperatures: list[float] = field(default_factory=list)
    deltas: list[float] = field(default_factory=list)
    steps: int = 0

    def __post_init__(self) -> None:
        for spec in CHOICES:
            values, transform = getattr(self, spec.grid), TRANSFORMS[spec.transform]
            bad = [v for v in values if not transform.contains(v)]
            if bad:
                raise ValueError(
                    f"student_choice.{spec.grid} must lie in {transform.describe_range()} "
                    f"({spec.transform}'s {transform.parameter}), got {bad}"
                )
            if len(set(values)) != len(values):
                raise ValueError(
                    f"student_choice.{spec.grid} must not repeat a value, got {values}"
                )
        if not (self.temperatures or self.deltas):
            raise ValueError(
                "student_choice has an empty grid: give temperatures (Eq. 4's c) and/or deltas"
            )
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(
                f"student_choice.steps must be an integer >= 1 (each grid student's "
                f"training steps), got {self.steps!r}"
            )


@dataclass(frozen=True)
class ChoiceSpec:
    """A parameter the students choose: the grid of `StudentChoice.<grid>` trains `base`'s
    config with `argument` set to each value; `method`, trained like `base` with `argument:
    auto`, reads the choice from the stage `stage`'s calibration.json."""

    method: str
    base: str
    transform: str
    argument: str
    grid: str
    stage: str
    symbol: str  # the parameter's name in the report's labels


CHOICES = (
    ChoiceSpec("first_student_c", "first", "prob_temperature", "temperature", "temperatures",
               "choice-c", "c"),
    ChoiceSpec("ls_distill_student_delta", "ls_distill", "label_smoothing", "delta", "deltas",
               "choice-delta", "delta"),
)  # fmt: skip


def check_student_choice(choice: StudentChoice | None, students: dict[str, Any]) -> None:
    """Each chosen parameter needs its base student; the chosen students' names are reserved."""
    for spec in CHOICES:
        if spec.method in students:
            raise ValueError(
                f"students: {spec.method!r} is the student that student_choice.{spec.grid} "
                f"trains (like {spec.base!r}, with {spec.argument} chosen by the students); "
                "remove it from students"
            )
        if choice is not None and getattr(choice, spec.grid) and spec.base not in students:
            raise ValueError(
                f"student_choice.{spec.grid} needs the student {spec.base!r} in students: its "
                f"config trains the grid's students and {spec.method!r}"
            )
