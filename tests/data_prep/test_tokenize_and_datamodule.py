"""Tokenisation (shifted labels, answer position, truncation) and the QADataModule batches."""

from __future__ import annotations

import pytest
import torch
from first_pl_testing import BIGBENCH

from first_pl.data.qa_datamodule import QADataModule
from first_pl.data.template import PromptTemplate, TemplateError, candidate_token_ids
from first_pl.data.tokenize import IGNORE, TruncationReport, collate, encode
from first_pl.tasks import BigBench, GeneratedInstructions, GeneratedMC, MCExample


def test_labels_are_shifted_response_tokens(tiny_tokenizer):
    template = PromptTemplate()
    example = MCExample(id="x", question="Which of these is a fruit?", choices=("apple", "dog", "red"), answer=0)
    candidates = candidate_token_ids(tiny_tokenizer, template)
    enc = encode(example, tiny_tokenizer, template, candidates, 64, TruncationReport())
    prompt = tiny_tokenizer.encode(template.mc_prompt(example), add_special_tokens=False)
    assert enc.input_ids[: len(prompt)] == prompt
    assert enc.answer_position == len(prompt) - 1
    # logits at the answer position predict the letter; the next position predicts EOS
    assert enc.labels[enc.answer_position] == candidates[0] == enc.input_ids[enc.answer_position + 1]
    assert enc.labels[enc.answer_position + 1] == tiny_tokenizer.eos_token_id
    assert sum(label != IGNORE for label in enc.labels) == 2
    assert enc.candidate_ids == candidates[:3] and enc.gold == 0


def test_truncation_drops_prompt_from_the_left_and_is_counted(tiny_tokenizer):
    template = PromptTemplate()
    example = MCExample(id="x", question="apple " * 40, choices=("apple", "dog"), answer=1)
    report = TruncationReport()
    candidates = candidate_token_ids(tiny_tokenizer, template)
    enc = encode(example, tiny_tokenizer, template, candidates, 20, report)
    assert len(enc.input_ids) == 20 and report.truncated == 1 and report.tokens_dropped > 0
    assert enc.labels[enc.answer_position] == candidates[1]
    assert "1 of 1 examples truncated" in report.summary("t")


def test_collate_pads_and_masks(tiny_tokenizer):
    template = PromptTemplate()
    candidates = candidate_token_ids(tiny_tokenizer, template)
    items = [
        encode(ex, tiny_tokenizer, template, candidates, 64, TruncationReport())
        for ex in GeneratedMC(test_size=8, min_options=2, max_options=5).load("test")
    ]
    batch = collate(items, tiny_tokenizer.pad_token_id)
    lengths = [len(i.input_ids) for i in items]
    assert batch["input_ids"].shape == (8, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert ((batch["labels"] != IGNORE).sum(1) == 2).all()
    assert batch["candidate_ids"].shape[1] == max(len(i.candidate_ids) for i in items)
    assert ((batch["candidate_ids"] >= 0).sum(1) == torch.tensor([len(i.candidate_ids) for i in items])).all()
    rows = torch.arange(8)
    assert (batch["labels"][rows, batch["answer_position"]] == batch["candidate_ids"][rows, batch["gold"]]).all()


def test_candidate_that_is_not_one_token_is_refused(tiny_tokenizer):
    with pytest.raises(TemplateError, match="candidate ' A B' .*is 2 tokens"):
        candidate_token_ids(tiny_tokenizer, PromptTemplate(letters="B", answer_prefix=" A "))


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


def test_datamodule_errors_name_the_option(tiny_model_dir):
    with pytest.raises(ValueError, match="data.train_task is required for fit"):
        QADataModule(tokenizer=str(tiny_model_dir)).setup("fit")
    with pytest.raises(ValueError, match="data.batch_size"):
        QADataModule(tokenizer=str(tiny_model_dir), batch_size=0)
    dm = QADataModule(tokenizer=str(tiny_model_dir), eval_tasks=[GeneratedInstructions()])
    with pytest.raises(ValueError, match="'generated_instructions' is not multiple choice"):
        dm.test_dataloader()
