"""Task loaders on small files written here in the exact hub schemas, and on BIG-bench files."""

from __future__ import annotations

import csv
import json
import re
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

    boolq = tmp_path / "boolq"  # its own folder: one with a test file is read split for split
    boolq.mkdir()
    with (boolq / "validation.csv").open("w", newline="") as f:  # BoolQ's test is the hub validation
        writer = csv.DictWriter(f, fieldnames=["question", "answer", "passage"])
        writer.writeheader()
        writer.writerow({"question": "is the sky blue", "answer": "True", "passage": "The sky is blue."})
        writer.writerow({"question": "is ice hot", "answer": "False", "passage": "Ice is cold."})
    examples = BoolQ(source=str(boolq)).load("test")
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


# -- issue 14: nothing leaks, nothing dropped or changed silently ---------------------------------


def obqa_row(i: int) -> dict:
    return {"id": f"o{i}", "question_stem": f"Which is hot {i}?", "answerKey": "A",
            "choices": {"text": ["sun", "ice", "snow", "hail"], "label": ["A", "B", "C", "D"]}}  # fmt: skip


def boolq_row(i: int, answer: object = True) -> dict:
    return {"question": f"is it {i}", "answer": answer, "passage": "text"}


@pytest.mark.parametrize(
    ("task_class", "row"), [(CommonsenseQA, csqa_row), (OpenBookQA, obqa_row), (BoolQ, boolq_row)]
)
def test_single_file_source_is_carved_into_disjoint_splits(tmp_path, task_class, row):
    path = write_jsonl(tmp_path / "one.jsonl", [row(i) for i in range(200)])
    task = task_class(source=str(path))
    splits = {split: [e.id for e in task.load(split)] for split in ("train", "validation", "test")}
    assert sum(len(ids) for ids in splits.values()) == 200  # every row in exactly one split
    assert len(set().union(*splits.values())) == 200
    assert 5 < len(splits["validation"]) < 40 and 35 < len(splits["test"]) < 90


def test_folder_without_the_split_file_names_the_split_asked_for(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [csqa_row(i) for i in range(3)])
    with pytest.raises(TaskDataError, match=r"has no validation\{.*\} file \(the task reads its 'test' split from it\)"):
        CommonsenseQA(source=str(tmp_path)).load("test")


@pytest.mark.parametrize("answer", [float("nan"), 2.0, None])
def test_boolq_parquet_answer_that_is_not_true_or_false_is_refused(tmp_path, answer):
    import pyarrow as pa
    import pyarrow.parquet as pq

    # how pandas writes a bool column with a gap: float64 1.0 / 0.0 / NaN
    table = pa.table({"question": ["is it", "is it not"], "passage": ["p", "p"], "answer": pa.array([1.0, answer], pa.float64())})
    pq.write_table(table, tmp_path / "validation.parquet")
    missing = answer is None or answer != answer
    expect = "row 1 is missing field 'answer'" if missing else "row 1 field 'answer' is 2.0; expected true or false"
    with pytest.raises(TaskDataError, match=re.escape(expect)):
        BoolQ(source=str(tmp_path)).load("test")


def test_boolq_text_answer_other_than_true_or_false_is_refused(tmp_path):
    write_jsonl(tmp_path / "validation.jsonl", [boolq_row(0), boolq_row(1, "maybe")])
    with pytest.raises(TaskDataError, match="row 1 field 'answer' is 'maybe'; expected true or false"):
        BoolQ(source=str(tmp_path)).load("test")


def test_boolq_accepts_booleans_zero_and_one(tmp_path):
    write_jsonl(tmp_path / "validation.jsonl", [boolq_row(0, True), boolq_row(1, 0), boolq_row(2, 1.0), boolq_row(3, "FALSE")])
    assert [e.answer for e in BoolQ(source=str(tmp_path)).load("test")] == [0, 1, 0, 1]


def test_csqa_labels_and_texts_of_different_lengths_are_refused(tmp_path):
    row = csqa_row(0, answer="A")
    row["choices"] = {"label": ["A", "B", "C"], "text": ["park", "home"]}
    path = write_jsonl(tmp_path / "validation.jsonl", [row])
    with pytest.raises(TaskDataError, match=r"row 0 field 'choices' has 3 labels \['A', 'B', 'C'\] but 2 texts"):
        CommonsenseQA(source=str(tmp_path)).load("test")
    assert path.exists()


def test_csqa_from_csv_is_refused_by_name(tmp_path):
    with (tmp_path / "validation.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "question", "choices", "answerKey"])
        writer.writeheader()
        writer.writerow({"id": "q1", "question": "Where?", "choices": str(csqa_row(1)["choices"]), "answerKey": "A"})
    with pytest.raises(TaskDataError, match=r"validation\.csv: row 0 field 'choices' is text: a CSV file cannot hold"):
        CommonsenseQA(source=str(tmp_path)).load("test")


def test_csv_with_a_byte_order_mark_is_read(tmp_path):
    text = "question,answer,passage\r\nis the sky blue,True,The sky is blue.\r\n"
    (tmp_path / "validation.csv").write_bytes(text.encode("utf-8-sig"))
    (example,) = BoolQ(source=str(tmp_path)).load("test")
    assert example.question == "Is the sky blue?" and example.answer == 0


def bigbench_file(tmp_path: Path, examples: list) -> Path:
    path = tmp_path / "task.json"
    path.write_text(json.dumps({"examples": examples}))
    return path


def test_bigbench_examples_that_are_strings_are_refused(tmp_path):
    path = bigbench_file(tmp_path, ["What is 2+2?", "And 3+3?"])
    with pytest.raises(TaskDataError, match=r"task\.json: example 0 is a str; expected an object with 'input' and 'target_scores'"):
        BigBench(str(path)).load("test")


def test_bigbench_keeps_six_option_examples_unless_max_options_and_counts_the_drop(tmp_path, caplog):
    six = {f"o{j}": int(j == 0) for j in range(6)}
    four = {f"o{j}": int(j == 0) for j in range(4)}
    path = bigbench_file(tmp_path, [{"input": f"q{i}", "target_scores": six if i % 3 else four} for i in range(30)])
    kept = BigBench(str(path), test_fraction=0.0, validation_fraction=0.0).load("train")
    assert len(kept) == 30 and max(len(e.choices) for e in kept) == 6
    limited = BigBench(str(path), test_fraction=0.0, validation_fraction=0.0, max_options=5)
    with caplog.at_level("WARNING"):
        assert len(limited.load("train")) == 10
    assert limited.dropped == 20
    assert "left out 20 of 30 examples with more than BigBench.max_options=5 options" in caplog.text


def test_alpaca_nan_input_is_empty_and_test_split_is_refused(tmp_path):
    rows = [{"instruction": "Say hi.", "input": float("nan"), "output": "Hi."}, {"instruction": "Add.", "input": "1 2", "output": "3"}]
    path = write_jsonl(tmp_path / "alpaca.jsonl", rows)  # json.dumps writes the NaN literal
    assert "NaN" in path.read_text()
    task = Alpaca(source=str(path), validation_fraction=0.0)
    assert [e.input for e in task.load("train")] == ["", "1 2"]
    with pytest.raises(TaskDataError, match=r"task 'alpaca' .* has no test split: Alpaca\.test_fraction is 0"):
        task.load("test")
