"""What decides a task's examples, said and kept: BIG-bench splits keyed on each example's content,
a hub folder's own test file read, and a `limit` above a split's size said with the numbers."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from first_pl_testing import BIGBENCH

from first_pl.tasks import Alpaca, BigBench, BoolQ, CommonsenseQA, TaskDataError
from first_pl.tasks.base import content_key

SPLITS = ("train", "validation", "test")


def write_task(path: Path, examples: list[dict], **fields) -> Path:
    path.write_text(json.dumps({**fields, "examples": examples}))
    return path


def row(i: int) -> dict:
    return {"input": f"Which number is {i}?", "target_scores": {str(i): 1, str(i + 1): 0, str(i + 2): 0}}


def split_of(task: BigBench) -> dict[str, tuple[str, str]]:
    """Each example's content (question) -> (split, id)."""
    return {ex.question: (split, ex.id) for split in SPLITS for ex in task.load(split)}


def test_inserting_an_example_at_the_top_moves_no_other_example(tmp_path):
    rows = [row(i) for i in range(200)]
    before = split_of(BigBench(str(write_task(tmp_path / "a.json", rows)), name="t"))
    after = split_of(BigBench(str(write_task(tmp_path / "b.json", [row(999), *rows])), name="t"))
    assert len(before) == 200 and len(after) == 201
    assert {q: after[q] for q in before} == before  # same split and same id for every example
    assert after["Which number is 999?"][1] == "t-" + content_key("Which number is 999?", ("999", "1000", "1001"))[:12]


def test_the_id_does_not_depend_on_the_order_of_the_options(tmp_path):
    one = write_task(tmp_path / "a.json", [{"input": "q", "target_scores": {"x": 1, "y": 0}}])
    two = write_task(tmp_path / "b.json", [{"input": "q", "target_scores": {"y": 0, "x": 1}}])
    ids = [BigBench(str(p), name="t", validation_fraction=0.0, test_fraction=0.0).load("train")[0].id for p in (one, two)]
    assert ids[0] == ids[1]


def test_repeated_examples_get_distinct_ids_and_share_one_split(tmp_path):
    rows = [row(i) for i in range(30)] + [row(5), row(5), row(7)]
    task = BigBench(str(write_task(tmp_path / "task.json", rows)), name="t")
    found = {split: [ex for ex in task.load(split) if ex.question in ("Which number is 5?", "Which number is 7?")]
             for split in SPLITS}  # fmt: skip
    copies = [ex for examples in found.values() for ex in examples]
    base = "t-" + content_key("Which number is 5?", ("5", "6", "7"))[:12]
    assert sorted(ex.id for ex in copies if ex.question == "Which number is 5?") == [base, f"{base}-2", f"{base}-3"]
    assert len({ex.id for ex in copies}) == 5
    for question in ("Which number is 5?", "Which number is 7?"):
        assert len({split for split, examples in found.items() if any(e.question == question for e in examples)}) == 1


def test_the_real_files_keep_every_example_once():
    for name, total in (("social_iqa", 1954), ("strategyqa", 2290)):  # both hold repeated examples
        task = BigBench(str(BIGBENCH / name))
        ids = [ex.id for split in SPLITS for ex in task.load(split)]
        assert len(ids) == len(set(ids)) == total


def csqa_row(i: int, answer: str = "B") -> dict:
    return {"id": f"q{i}", "question": f"Where is thing {i}?",
            "choices": {"label": list("ABCDE"), "text": ["park", "home", "shop", "sea", "sky"]}, "answerKey": answer}  # fmt: skip


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_csqa_folder_with_a_test_file_is_read_split_for_split(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [csqa_row(i) for i in range(50)])
    write_jsonl(tmp_path / "validation.jsonl", [csqa_row(100 + i, "A") for i in range(7)])
    write_jsonl(tmp_path / "test.jsonl", [csqa_row(200 + i, "E") for i in range(9)])
    task = CommonsenseQA(source=str(tmp_path))
    assert [ex.id for ex in task.load("test")] == [f"q{200 + i}" for i in range(9)]
    assert [ex.id for ex in task.load("validation")] == [f"q{100 + i}" for i in range(7)]
    assert [ex.id for ex in task.load("train")] == [f"q{i}" for i in range(50)]  # whole: nothing carved off


def test_a_boolq_folder_with_a_test_file_is_read_split_for_split(tmp_path):
    def rows(n: int, answer: bool) -> list[dict]:
        return [{"question": f"is it {i}", "answer": answer, "passage": "p"} for i in range(n)]

    write_jsonl(tmp_path / "train.jsonl", rows(20, True))
    write_jsonl(tmp_path / "validation.jsonl", rows(4, True))
    write_jsonl(tmp_path / "test.jsonl", rows(3, False))
    task = BoolQ(source=str(tmp_path))
    assert [(ex.id, ex.answer) for ex in task.load("test")] == [("test-0", 1), ("test-1", 1), ("test-2", 1)]
    assert len(task.load("validation")) == 4 and len(task.load("train")) == 20


def test_a_hub_layout_folder_still_tests_on_its_validation_file(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [csqa_row(i) for i in range(50)])
    write_jsonl(tmp_path / "validation.jsonl", [csqa_row(100 + i) for i in range(7)])
    task = CommonsenseQA(source=str(tmp_path))
    assert [ex.id for ex in task.load("test")] == [f"q{100 + i}" for i in range(7)]
    assert len(task.load("train")) + len(task.load("validation")) == 50


def test_an_unlabelled_test_file_is_refused_with_the_reason(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [csqa_row(i) for i in range(5)])
    write_jsonl(tmp_path / "validation.jsonl", [csqa_row(10)])
    write_jsonl(tmp_path / "test.jsonl", [csqa_row(20, "")])  # the hub's test split has no answers
    with pytest.raises(TaskDataError, match=r"test\.jsonl: row 0 field 'answerKey' is ''; expected one of .* "
                       r"\(an unlabelled row, like the hub's test split: a folder holding a test file is read split for split"):  # fmt: skip
        CommonsenseQA(source=str(tmp_path)).load("test")


@pytest.mark.parametrize("family", ["bigbench", "csqa", "alpaca"])
def test_a_limit_above_the_split_is_said_once_with_the_numbers(tmp_path, caplog, family):
    if family == "bigbench":
        task = BigBench(str(BIGBENCH / "physics"), limit=500)
        split, size = "test", 124
    elif family == "csqa":
        write_jsonl(tmp_path / "validation.jsonl", [csqa_row(i) for i in range(22)])
        task = CommonsenseQA(source=str(tmp_path), limit=100)
        split, size = "test", 22
    else:
        write_jsonl(tmp_path / "train.jsonl", [{"instruction": "Say hi.", "output": "Hi."}] * 10)
        task = Alpaca(source=str(tmp_path), limit=11, validation_fraction=0.0)
        split, size = "train", 10
    with caplog.at_level(logging.WARNING):
        assert len(task.load(split)) == size
        assert len(task.load(split)) == size
    said = [r.getMessage() for r in caplog.records if "limit" in r.getMessage()]
    assert said == [
        f"task {task.name!r} split {split!r}: limit {task.limit} is above the split's {size} examples; using all {size}"
    ]


def test_a_limit_within_the_split_says_nothing(caplog):
    with caplog.at_level(logging.WARNING):
        assert len(BigBench(str(BIGBENCH / "physics"), limit=124).load("test")) == 124
    assert "limit" not in caplog.text
