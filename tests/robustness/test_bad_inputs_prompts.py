"""Bad task inputs around prompts, option order and local split files: one clear error each
(the pattern of test_bad_inputs.py, whose helpers this reuses)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from robustness_world import World
from test_bad_inputs import (
    Case,
    assert_one_clear_error,
    bigbench_examples,
    csqa_file,
    csqa_row,
    evaluate_on_tasks,
    fit_on_task,
)


def csqa_folder_with_unlabelled_test(tmp: Path) -> dict:
    """A folder mirroring the hub's three CSQA splits: its test rows have an empty answerKey."""
    folder = tmp / "csqa"
    folder.mkdir()
    for split, answer in (("train", "A"), ("validation", "A"), ("test", "")):
        csqa_file(folder, [csqa_row(i, answerKey=answer) for i in range(3)], name=f"{split}.jsonl")
    return {"class_path": "first_pl.tasks.CommonsenseQA", "init_args": {"source": str(folder)}}


def bigbench_with_prefix(tmp: Path, prefix: object) -> dict:
    (tmp / "task.json").write_text(json.dumps({
        "task_prefix": prefix, "examples": [{"input": f"q{i}", "target_scores": {"a": 1, "b": 0}} for i in range(9)]}))  # fmt: skip
    return {"class_path": "first_pl.tasks.BigBench", "init_args": {"path": str(tmp / "task.json")}}


CASES = [
    Case(
        "data-csqa-folder-test-file-unlabelled",
        lambda w, t: evaluate_on_tasks(w, t, csqa_folder_with_unlabelled_test(t)),
        r"csqa/test\.jsonl: row 0 field 'answerKey' is ''; expected one of \['A', 'B', 'C'\] \(an unlabelled row, "
        r"like the hub's test split: a folder holding a test file is read split for split, so that file must hold answers\)",
    ),
    Case(
        "bigbench-task-prefix-not-text",
        lambda w, t: fit_on_task(w, t, bigbench_with_prefix(t, ["Answer", "T or F"])),
        r"task\.json: field 'task_prefix' must be text, got \['Answer', 'T or F'\]",
    ),
    Case(
        "bigbench-option-order-shuffled",
        lambda w, t: fit_on_task(w, t, bigbench_examples(
            t, [{"input": "q", "target_scores": {"a": 1, "b": 0}}], option_order="shuffled")),
        r"BigBench\.option_order must be one of \('balanced', 'source'\), got 'shuffled'",
    ),  # fmt: skip
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_clear_error(case: Case, world: World, tmp_path: Path, capsys) -> None:
    assert_one_clear_error(case, world, tmp_path, capsys)
