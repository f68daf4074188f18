"""Bad `student_choice` settings of `first-pl pipeline`: each refused by name, before any stage
runs (a typo must not cost the teacher's training)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from robustness_helpers import first_pl
from test_bad_inputs import Case, error_message

from first_pl.cli import main


def pipeline_with(tmp: Path, **settings) -> None:
    """`first-pl pipeline` on a config holding `settings` (the repository's default configs)."""
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"output_dir": str(tmp / "out"), **settings}))
    main(["pipeline", "--config", str(path)])


FIRST = {"config": "configs/model/first.yaml", "max_steps": 2}
CASES = [
    Case(
        "student-choice-c-outside-eq4-range",
        lambda _, t: pipeline_with(t, student_choice={"temperatures": [0.3, 1.5], "steps": 4}),
        r"student_choice\.temperatures must lie in \(0, 1\] \(prob_temperature's c\), got \[1\.5\]",
    ),
    Case(
        "student-choice-delta-of-one",
        lambda _, t: pipeline_with(t, student_choice={"deltas": [0.0, 1.0], "steps": 4}),
        r"student_choice\.deltas must lie in \[0, 1\) \(label_smoothing's delta\), got \[1\.0\]",
    ),
    Case(
        "student-choice-repeated-value",
        lambda _, t: pipeline_with(t, student_choice={"temperatures": [0.3, 0.3], "steps": 4}),
        r"student_choice\.temperatures must not repeat a value, got \[0\.3, 0\.3\]",
    ),
    Case(
        "student-choice-empty-grid",
        lambda _, t: pipeline_with(t, student_choice={"steps": 4}),
        r"student_choice has an empty grid: give temperatures \(Eq\. 4's c\) and/or deltas",
    ),
    Case(
        "student-choice-without-steps",
        lambda _, t: pipeline_with(t, student_choice={"temperatures": [0.3]}),
        r"student_choice\.steps must be an integer >= 1 \(each grid student's training steps\), got 0",
    ),
    Case(
        "student-choice-student-listed-by-hand",
        lambda _, t: pipeline_with(t, students={"first": FIRST, "first_student_c": FIRST}),
        r"students: 'first_student_c' is the student that student_choice\.temperatures trains "
        r"\(like 'first', with temperature chosen by the students\); remove it from students",
    ),
    Case(
        "student-choice-without-its-base-student",
        lambda _, t: pipeline_with(
            t, students={"first": FIRST}, student_choice={"deltas": [0.1], "steps": 4}
        ),
        r"student_choice\.deltas needs the student 'ls_distill' in students: its config trains "
        r"the grid's students and 'ls_distill_student_delta'",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_student_choice_gives_one_clear_error(case: Case, tmp_path: Path, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    try:
        case.provoke(None, tmp_path)  # no World: nothing is trained
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the table says what is expected
        message = error_message(exc, capsys)
    else:
        pytest.fail(f"{case.id}: no error")
    assert re.search(case.expect, message), f"{case.id}: {message[-2000:]}"
    assert not (tmp_path / "out").exists()  # refused before any stage


def test_command_line_prints_the_student_choice_error_in_one_line(tmp_path: Path):
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "out"),
                                    "student_choice": {"temperatures": [2.0], "steps": 4}}))  # fmt: skip
    done = first_pl(["pipeline", "--config", str(path)])
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert re.fullmatch(
        r"first-pl pipeline: error: student_choice\.temperatures must lie in \(0, 1\] "
        r"\(prob_temperature's c\), got \[2\.0\]",
        done.stderr.strip().splitlines()[-1],
    ), done.stderr[-3000:]
