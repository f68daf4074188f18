"""Every task family's instruction and prompt fields reach the model: the token ids of the batch
the model is given, decoded by a byte-level tokenizer (which round-trips any text), hold them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from first_pl_testing import BIGBENCH

from first_pl.data.qa_datamodule import QADataModule
from first_pl.tasks import Alpaca, BigBench, BoolQ, CommonsenseQA, OpenBookQA

PHYSICS_PREFIX = (
    "Identify the physics formula that would be most useful for finding the answer to each of "
    "the following word problems."
)


@pytest.fixture(scope="module")
def byte_tokenizer(tmp_path_factory) -> str:
    """A byte-level BPE tokenizer saved as a folder: decode(encode(text)) == text for any text,
    and " A" ... " E" are single tokens (letter answers)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator([" A B C D E yes no"] * 10, trainer)
    folder = tmp_path_factory.mktemp("byte_tokenizer")
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>").save_pretrained(folder)
    return str(folder)


def model_inputs(dm: QADataModule, split: str) -> list[str]:
    """The decoded prompt + response of every row of the first batch the model gets."""
    if split == "train":
        dm.setup("fit")
        batch = next(iter(dm.train_dataloader()))
    else:
        dm.setup("test")
        batch = next(iter(dm.test_dataloader()[0]))
    return [
        dm.tokenizer.decode(ids[mask.bool()], skip_special_tokens=True)
        for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True)
    ]


def write_jsonl(path: Path, rows: list[dict]) -> str:
    """Rows as a split file; returns its folder (a folder of split files is read split by split)."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path.parent)


def test_bigbench_task_prefix_opens_every_prompt_of_the_real_physics_file(byte_tokenizer):
    task = BigBench(str(BIGBENCH / "physics"), limit=8)
    dm = QADataModule(tokenizer=byte_tokenizer, eval_tasks=[task], eval_batch_size=8, max_length=1024)
    examples = task.load("test")
    decoded = model_inputs(dm, "test")
    assert len(decoded) == 8
    for text, ex in zip(decoded, examples, strict=True):
        assert text.startswith(f"{PHYSICS_PREFIX}\n\nQuestion: {ex.question.strip()}\nA. {ex.choices[0]}\n")


def test_bigbench_instruction_option_replaces_or_drops_the_task_prefix(byte_tokenizer, tmp_path):
    path = tmp_path / "task.json"
    rows = [{"input": f"Cats can fly {i}.", "target_scores": {"T": int(i % 2), "F": int(not i % 2)}} for i in range(40)]
    path.write_text(json.dumps({"task_prefix": "Output T for true and F for false.\n", "examples": rows}))
    for instruction, expect in ((None, "Output T for true and F for false.\n\nQuestion: "),
                                ("Say T or F.", "Say T or F.\n\nQuestion: "), ("", "Question: ")):  # fmt: skip
        task = BigBench(str(path), instruction=instruction, test_fraction=0.9, validation_fraction=0.0)
        dm = QADataModule(tokenizer=byte_tokenizer, eval_tasks=[task], max_length=1024)
        assert all(text.startswith(expect) for text in model_inputs(dm, "test")), instruction
    assert BigBench(str(path)).fingerprint() != BigBench(str(path), instruction="").fingerprint()


def csqa_row(i: int) -> dict:
    return {"id": f"q{i}", "question": f"Where would you keep thing {i}?", "question_concept": "thing",
            "choices": {"label": list("ABCDE"), "text": ["park", "home", "shop", "sea", "sky"]}, "answerKey": "B"}  # fmt: skip


def test_csqa_question_and_options_reach_the_model(byte_tokenizer, tmp_path):
    task = CommonsenseQA(source=write_jsonl(tmp_path / "validation.jsonl", [csqa_row(i) for i in range(3)]))
    dm = QADataModule(tokenizer=byte_tokenizer, eval_tasks=[task])
    assert model_inputs(dm, "test")[1] == (
        "Question: Where would you keep thing 1?\nA. park\nB. home\nC. shop\nD. sea\nE. sky\nAnswer: B"
    )


def test_obqa_question_stem_reaches_the_model(byte_tokenizer, tmp_path):
    rows = [{"id": f"o{i}", "question_stem": f"The sun is the source of energy for {i}",
             "choices": {"text": ["rocks", "plants", "wind", "tides"], "label": list("ABCD")}, "answerKey": "B"}
            for i in range(2)]  # fmt: skip
    task = OpenBookQA(source=write_jsonl(tmp_path / "test.jsonl", rows))
    dm = QADataModule(tokenizer=byte_tokenizer, eval_tasks=[task])
    assert model_inputs(dm, "test")[0] == (
        "Question: The sun is the source of energy for 0\nA. rocks\nB. plants\nC. wind\nD. tides\nAnswer: B"
    )


def test_boolq_passage_comes_before_the_question(byte_tokenizer, tmp_path):
    rows = [{"question": "is ice cold", "answer": True, "passage": "Ice is frozen water; it is cold."}]
    task = BoolQ(source=write_jsonl(tmp_path / "validation.jsonl", rows))
    dm = QADataModule(tokenizer=byte_tokenizer, eval_tasks=[task])
    assert model_inputs(dm, "test") == [
        "Ice is frozen water; it is cold.\nQuestion: Is ice cold?\nA. yes\nB. no\nAnswer: A"
    ]


def test_alpaca_instruction_and_input_reach_the_model(byte_tokenizer, tmp_path):
    rows = [{"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}]
    task = Alpaca(source=write_jsonl(tmp_path / "train.jsonl", rows), validation_fraction=0.0)
    dm = QADataModule(tokenizer=byte_tokenizer, train_task=task, shuffle=False)
    assert model_inputs(dm, "train") == ["Instruction: Add the numbers.\nInput: 2 and 3\nResponse: 5"]
