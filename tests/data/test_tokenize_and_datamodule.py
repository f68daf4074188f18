"""Tokenisation (shifted labels, answer position, truncation) and the QADataModule batches."""

from __future__ import annotations

import json

import pytest
import torch
from first_pl_testing import BIGBENCH

from first_pl.data.batch import IGNORE_INDEX
from first_pl.data.qa_datamodule import QADataModule
from first_pl.data.template import PromptTemplate, TemplateError, letter_token_ids
from first_pl.data.tokenize import TruncationReport, collate, encode
from first_pl.tasks import (
    BigBench,
    GeneratedInstructions,
    GeneratedMC,
    InstructionExample,
    MCExample,
)
from first_pl.tasks.base import TaskDataError


def test_labels_are_shifted_response_tokens(tiny_tokenizer):
    template = PromptTemplate()
    example = MCExample(id="x", question="Which of these is a fruit?", choices=("apple", "dog", "red"), answer=0)
    candidates = letter_token_ids(tiny_tokenizer, template.letters, template.answer_prefix)
    enc = encode(example, tiny_tokenizer, template, 64, TruncationReport())
    prompt = tiny_tokenizer.encode(template.mc_prompt(example), add_special_tokens=False)
    assert enc.input_ids[: len(prompt)] == prompt
    assert enc.answer_position == len(prompt) - 1
    # logits at the answer position predict the letter; the next position predicts EOS
    assert enc.labels[enc.answer_position] == candidates[0] == enc.input_ids[enc.answer_position + 1]
    assert enc.labels[enc.answer_position + 1] == tiny_tokenizer.eos_token_id
    assert sum(label != IGNORE_INDEX for label in enc.labels) == 2
    assert enc.candidate_ids == list(candidates[:3]) and enc.gold == 0


def test_text_answers_score_each_option_by_its_first_token(tiny_tokenizer):
    template = PromptTemplate(answer="text")
    example = MCExample(id="x", question="Which of these is a fruit?", choices=("dog", "apple", "red"), answer=1)
    enc = encode(example, tiny_tokenizer, template, 64, TruncationReport())
    prompt = tiny_tokenizer.encode(template.mc_prompt(example), add_special_tokens=False)
    assert "B. apple" in template.mc_prompt(example)  # options are still shown lettered
    words = [tiny_tokenizer.convert_tokens_to_ids(w) for w in ("dog", "apple", "red")]
    assert enc.candidate_ids == words and enc.gold == 1
    assert enc.labels[enc.answer_position] == words[1] == enc.input_ids[len(prompt)]
    assert enc.labels[enc.answer_position + 1] == tiny_tokenizer.eos_token_id


def test_text_answers_refuse_options_sharing_a_first_token(tiny_tokenizer):
    example = MCExample(id="q7", question="Which?", choices=("red apple", "dog", "red"), answer=0)
    with pytest.raises(TemplateError, match=r"example 'q7': options 'red apple' and 'red' both start with token 'red'.*template.answer='letter'"):
        PromptTemplate(answer="text").candidate_ids(tiny_tokenizer, example)


def test_unknown_answer_format_is_refused():
    with pytest.raises(TemplateError, match="template.answer must be one of .*'letter', 'text'.* got 'word'"):
        PromptTemplate(answer="word")


def test_truncation_fits_the_prompt_and_is_counted(tiny_tokenizer):
    template = PromptTemplate()
    example = MCExample(id="x", question="apple " * 40, choices=("apple", "dog"), answer=1)
    report = TruncationReport()
    enc = encode(example, tiny_tokenizer, template, 20, report)
    assert len(enc.input_ids) == 20 and report.truncated == 1 and report.tokens_dropped > 0
    assert enc.labels[enc.answer_position] == enc.candidate_ids[1]
    assert "1 of 1 examples truncated" in report.summary("t")


def test_collate_pads_and_masks(tiny_tokenizer):
    template = PromptTemplate()
    items = [
        encode(ex, tiny_tokenizer, template, 64, TruncationReport())
        for ex in GeneratedMC(test_size=8, min_options=2, max_options=5).load("test")
    ]
    batch = collate(items, tiny_tokenizer.pad_token_id)
    lengths = [len(i.input_ids) for i in items]
    assert batch["input_ids"].shape == (8, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert ((batch["labels"] != IGNORE_INDEX).sum(1) == 2).all()
    assert batch["candidate_ids"].shape[1] == max(len(i.candidate_ids) for i in items)
    assert ((batch["candidate_ids"] >= 0).sum(1) == torch.tensor([len(i.candidate_ids) for i in items])).all()
    rows = torch.arange(8)
    assert (batch["labels"][rows, batch["answer_position"]] == batch["candidate_ids"][rows, batch["gold"]]).all()


def test_candidate_that_is_not_one_token_is_refused(tiny_tokenizer):
    with pytest.raises(TemplateError, match="candidate ' A B' .*is 2 tokens"):
        letter_token_ids(tiny_tokenizer, "B", " A ")


def test_datamodule_serves_train_and_several_eval_tasks(tiny_model_dir):
    dm = QADataModule(
        tokenizer=str(tiny_model_dir),
        train_task=GeneratedInstructions(train_size=20),
        eval_tasks=[GeneratedMC(validation_size=10, test_size=12), BigBench(str(BIGBENCH / "physics"), limit=7)],
        batch_size=4,
        eval_batch_size=5,
    )
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    assert set(train) == {"input_ids", "attention_mask", "labels", "example_id"}
    assert dm.eval_task_names == ["generated", "physics"]
    loaders = dm.test_dataloader()
    assert [len(loader.dataset) for loader in loaders] == [12, 7]
    batch = next(iter(loaders[1]))
    assert {"answer_position", "candidate_ids", "gold"} <= set(batch)


def test_task_templates_override_the_template_for_their_task(tiny_model_dir, tiny_tokenizer):
    dm = QADataModule(
        tokenizer=str(tiny_model_dir),
        train_task=GeneratedMC(train_size=8, validation_size=4, test_size=4),
        eval_tasks=[GeneratedMC(test_size=6), BigBench(str(BIGBENCH / "physics"), limit=3)],
        task_templates={"generated": PromptTemplate(answer="text")},
    )
    dm.setup("test")
    generated, physics = (next(iter(loader)) for loader in dm.test_dataloader())
    letters = torch.tensor(letter_token_ids(tiny_tokenizer, "ABCDE", " "))
    assert not torch.isin(generated["candidate_ids"], letters).any()  # option words
    assert torch.isin(physics["candidate_ids"], letters).all()  # physics keeps letters
    assert dm.candidate_letters == {"generated": "ABCDE", "physics": "ABCDE"}


def test_task_templates_naming_an_unknown_task_are_refused():
    with pytest.raises(ValueError, match=r"data.task_templates names \['csqa'\].*its tasks are \['generated'\]"):
        QADataModule(train_task=GeneratedMC(), task_templates={"csqa": PromptTemplate(answer="text")})


def test_datamodule_errors_name_the_option(tiny_model_dir):
    with pytest.raises(ValueError, match="data.train_task is required for fit"):
        QADataModule(tokenizer=str(tiny_model_dir)).setup("fit")
    with pytest.raises(ValueError, match="data.batch_size"):
        QADataModule(tokenizer=str(tiny_model_dir), batch_size=0)
    dm = QADataModule(tokenizer=str(tiny_model_dir), eval_tasks=[GeneratedInstructions()])
    with pytest.raises(ValueError, match="'generated_instructions' is not multiple choice"):
        dm.test_dataloader()


# -- issue 14: each split is reported, names are keys, nothing truncated silently ----------------


def test_long_response_is_cut_and_counted_with_its_lost_eos(tiny_tokenizer):
    example = InstructionExample(id="i", instruction="Name one fruit.", input="", output="apple " * 30)
    report = TruncationReport()
    enc = encode(example, tiny_tokenizer, PromptTemplate(), 16, report)
    response = tiny_tokenizer.encode(" " + example.output, add_special_tokens=False) + [tiny_tokenizer.eos_token_id]
    assert len(enc.input_ids) == 16 and tiny_tokenizer.eos_token_id not in enc.input_ids
    assert report.responses_truncated == 1 and report.response_tokens_dropped == len(response) - 15
    assert f"1 responses cut on the right, losing {len(response) - 15} tokens and their EOS" in report.summary("t")


def test_two_evaluation_tasks_with_one_name_are_refused(tmp_path):
    for folder in ("x1", "x2"):
        (tmp_path / folder / "same").mkdir(parents=True)
        (tmp_path / folder / "same" / "task.json").write_text('{"examples": [{"input": "q", "target_scores": {"a": 1, "b": 0}}]}')
    tasks = [BigBench(str(tmp_path / "x1" / "same")), BigBench(str(tmp_path / "x2" / "same"))]
    with pytest.raises(ValueError, match=r"data.eval_tasks has two tasks named 'same' .*x2/same.*give each its own init_args.name"):
        QADataModule(eval_tasks=tasks)
    QADataModule(eval_tasks=[tasks[0], BigBench(str(tmp_path / "x2" / "same"), name="same_x2")])  # renamed: fine


def test_train_task_and_an_eval_task_with_one_name_are_encoded_apart(tiny_model_dir):
    train, evaluation = GeneratedMC(validation_size=3, seed=1), GeneratedMC(validation_size=5, seed=2)
    dm = QADataModule(tokenizer=str(tiny_model_dir), train_task=train, eval_tasks=[evaluation])
    assert len(dm.examples(train, "validation")) == 3  # e.g. `extract --split validation`
    (loader,) = dm.val_dataloader()
    assert [item.example_id for item in loader.dataset] == [e.id for e in evaluation.load("validation")]
    assert len(loader.dataset) == 5


def test_empty_train_split_names_the_task(tiny_model_dir):
    dm = QADataModule(tokenizer=str(tiny_model_dir), train_task=GeneratedMC(train_size=0, name="tiny"))
    dm.setup("fit")
    with pytest.raises(TaskDataError, match=r"task 'tiny' has no examples in its train split: GeneratedMC\("):
        dm.train_dataloader()


def test_more_options_than_letters_is_refused_naming_the_options(tiny_model_dir, tmp_path):
    six = {f"o{j}": int(j == 0) for j in range(6)}
    (tmp_path / "task.json").write_text(json.dumps({"examples": [{"input": "q", "target_scores": six}] * 3}))
    dm = QADataModule(tokenizer=str(tiny_model_dir), eval_tasks=[BigBench(str(tmp_path / "task.json"), name="six", validation_fraction=0.0, test_fraction=0.9)])
    with pytest.raises(TaskDataError, match=r"task 'six' split 'test': \d examples have up to 6 options but the template's letters 'ABCDE' name only 5; give data.task_templates.six.letters 6 letters \(e.g. 'ABCDEF'\), or set the task's max_options to 5"):
        dm.test_dataloader()


def test_answer_positions_are_reported_for_every_split_and_skew_is_warned(tiny_model_dir, caplog):
    balanced = BigBench(str(BIGBENCH / "physics"))
    in_file_order = BigBench(str(BIGBENCH / "physics"), name="physics_source", option_order="source")
    dm = QADataModule(tokenizer=str(tiny_model_dir), eval_tasks=[balanced, in_file_order])
    with caplog.at_level("INFO"):
        dm.test_dataloader()
    assert dm.answer_positions[("physics", "test")].counts == [31, 31, 31, 31]
    source = dm.answer_positions[("physics_source", "test")]  # carved with its own name as salt
    assert source.counts == [source.total, 0, 0, 0]
    assert (
        "physics/test: gold answer position over 124 examples, count (balanced): A 31 (31.1), B 31 (31.1), "
        "C 31 (31.1), D 31 (30.8); always answering A scores 25.0%"
    ) in caplog.text
    with pytest.warns(UserWarning, match=r"physics_source/validation: .*; always answering A scores 100.0%; letter\(s\) \['A'\] hold more than their share, .*option_order: balanced"):
        dm.val_dataloader()
