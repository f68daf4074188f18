"""Task loaders on small files written here in the exact hub schemas, and on BIG-bench files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from first_pl_testing import BIGBENCH

from first_pl.tasks import (
    Alpaca,
    BigBench,
    BoolQ,
    CommonsenseQA,
    GeneratedInstructions,
    GeneratedMC,
    OpenBookQA,
)
from first_pl.tasks.base import TaskDataError


def csqa_row(i: int, answer: str = "B") -> dict:
    return {
        "id": f"q{i}",
        "question": f"Where is thing {i}?",
        "question_concept": "thing",
        "choices": {"label": ["A", "B", "C", "D", "E"], "text": ["park", "home", "shop", "sea", "sky"]},
        "answerKey": answer,
    }


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_csqa_from_folder_maps_splits(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [csqa_row(i) for i in range(200)])
    write_jsonl(tmp_path / "validation.jsonl", [csqa_row(1000 + i, "E") for i in range(30)])
    task = CommonsenseQA(source=str(tmp_path))
    train, val, test = task.load("train"), task.load("validation"), task.load("test")
    assert len(train) + len(val) == 200 and 5 < len(val) < 40
    assert {e.id for e in train}.isdisjoint({e.id for e in val})
    assert len(test) == 30 and test[0].answer == 4 and test[0].choices[4] == "sky"
    assert task.load("validation") == val  # deterministic


def test_obqa_parquet_and_boolq_csv(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"id": f"o{i}", "question_stem": "Which is hot?", "choices": {"text": ["sun", "ice", "snow", "hail"], "label": ["A", "B", "C", "D"]}, "answerKey": "A"}
        for i in range(5)
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test.parquet")
    (ex,) = OpenBookQA(source=str(tmp_path), limit=1).load("test")  # a folder of split files
    assert ex.question == "Which is hot?" and ex.answer == 0 and len(ex.choices) == 4

    with (tmp_path / "validation.csv").open("w", newline="") as f:  # BoolQ's test is the hub validation
        writer = csv.DictWriter(f, fieldnames=["question", "answer", "passage"])
        writer.writeheader()
        writer.writerow({"question": "is the sky blue", "answer": "True", "passage": "The sky is blue."})
        writer.writerow({"question": "is ice hot", "answer": "False", "passage": "Ice is cold."})
    examples = BoolQ(source=str(tmp_path)).load("test")
    assert [e.answer for e in examples] == [0, 1]
    assert examples[0].question == "Is the sky blue?" and examples[0].choices == ("yes", "no")


def test_alpaca_json_carves_validation(tmp_path):
    rows = [{"instruction": f"Say {i}.", "input": "" if i % 2 else "ctx", "output": str(i), "text": ""} for i in range(100)]
    (tmp_path / "alpaca.json").write_text(json.dumps(rows))
    task = Alpaca(source=str(tmp_path / "alpaca.json"), validation_fraction=0.2)
    train, val = task.load("train"), task.load("validation")
    assert len(train) + len(val) == 100 and 5 < len(val) < 40
    assert train[0].output == str(int(train[0].id.split("-")[1]))


def test_bigbench_real_files_split_deterministically():
    task = BigBench(str(BIGBENCH / "social_iqa"))
    splits = {s: task.load(s) for s in ("train", "validation", "test")}
    ids = [e.id for s in splits.values() for e in s]
    assert len(ids) == len(set(ids)) == 1954
    assert all(2 <= len(e.choices) <= 5 and 0 <= e.answer < len(e.choices) for e in splits["test"])
    assert task.name == "social_iqa"
    assert BigBench(str(BIGBENCH / "social_iqa" / "task.json")).load("test") == splits["test"]


def test_generated_task_is_deterministic_and_noisy():
    a = GeneratedMC(train_size=300, label_noise=0.0, seed=3).load("train")
    b = GeneratedMC(train_size=300, label_noise=0.0, seed=3).load("train")
    assert a == b and a != GeneratedMC(train_size=300, seed=4).load("train")
    assert {e.kind for e in a} == {"category", "odd_one_out", "largest_number", "fair_die"}
    assert {len(e.choices) for e in a} == {2, 3, 4, 5}
    for e in a:
        if e.kind == "largest_number":
            assert e.choices[e.answer] == max(e.choices, key=int)
    noisy = GeneratedMC(train_size=300, label_noise=0.3, seed=3).load("train")
    flipped = sum(x.answer != y.answer for x, y in zip(a, noisy, strict=True) if x.kind != "fair_die")
    assert 0.15 < flipped / sum(x.kind != "fair_die" for x in a) < 0.45
    instructions = GeneratedInstructions(train_size=50).load("train")
    assert len(instructions) == 50 and all(e.output for e in instructions)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"id": "q1", "choices": {"label": ["A", "B"], "text": ["x", "y"]}, "answerKey": "A"}], "row 0 is missing field 'question'"),
        ([csqa_row(1, answer="F")], "row 0 field 'answerKey' is 'F'"),
        ([csqa_row(1), csqa_row(1)], "duplicate example id 'q1'"),
    ],
)
def test_bad_rows_name_file_row_and_field(tmp_path, rows, message):
    path = write_jsonl(tmp_path / "validation.jsonl", rows)
    with pytest.raises(TaskDataError, match="validation.jsonl") as err:
        CommonsenseQA(source=str(path)).load("test")
    assert message in str(err.value)


def test_missing_empty_malformed_and_non_utf8_files(tmp_path):
    with pytest.raises(TaskDataError, match="does not exist"):
        CommonsenseQA(source=str(tmp_path / "nope.jsonl")).load("test")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(TaskDataError, match="empty.jsonl: holds no rows"):
        CommonsenseQA(source=str(tmp_path / "empty.jsonl")).load("test")
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(TaskDataError, match="bad.json: malformed JSON at line 1"):
        CommonsenseQA(source=str(tmp_path / "bad.json")).load("test")
    (tmp_path / "latin.jsonl").write_bytes('{"question": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(TaskDataError, match="latin.jsonl: not valid UTF-8"):
        CommonsenseQA(source=str(tmp_path / "latin.jsonl")).load("test")
    with pytest.raises(TaskDataError, match="has no validation"):
        CommonsenseQA(source=str(tmp_path)).load("test")


def test_bigbench_errors(tmp_path):
    with pytest.raises(TaskDataError, match="does not exist"):
        BigBench(str(tmp_path / "missing")).load("test")
    bad = tmp_path / "task.json"
    bad.write_text(json.dumps({"examples": [{"input": "q", "target_scores": {"a": 1, "b": 1}}]}))
    with pytest.raises(TaskDataError, match="example 0 field 'target_scores' has 2 choices scoring 1"):
        BigBench(str(bad)).load("test")


def test_generated_task_rejects_bad_options():
    with pytest.raises(ValueError, match="unknown kinds"):
        GeneratedMC(kinds={"riddles": 1.0})
    with pytest.raises(ValueError, match="label_noise"):
        GeneratedMC(label_noise=1.0)
