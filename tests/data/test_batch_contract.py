"""The batch contract (first_pl.data.batch): the collates build exactly the keys its TypedDicts
declare, and a strategy's evaluation returns exactly an EvalOutput."""

from __future__ import annotations

import pytest
import torch

from first_pl.data.batch import (
    CANDIDATE_PAD,
    EXAMPLE_FACTS,
    IGNORE_INDEX,
    TEACHER_KEYS,
    DistillBatch,
    EvalBatch,
    EvalOutput,
    TrainBatch,
    response_mask,
    response_positions,
)
from first_pl.data.template import PromptTemplate
from first_pl.data.tokenize import TruncationReport, collate, encode
from first_pl.methods.base import MethodModule
from first_pl.tasks import InstructionExample, MCExample

OPTION_KEYS = {"option_input_ids", "option_attention_mask", "option_labels", "option_example",
               "option_choice", "option_scale", "option_context"}  # fmt: skip
QUESTIONS = [
    MCExample("q0", "Which of these is a fruit?", ("apple", "dog", "red"), 0),
    MCExample("q1", "Which of these is an animal?", ("apple", "dog"), 1),
]


def batch_of(examples, tokenizer, template=None):
    template = template or PromptTemplate()
    items = [encode(ex, tokenizer, template, 128, TruncationReport()) for ex in examples]
    return collate(items, tokenizer.pad_token_id)


def test_declared_keys():
    assert TrainBatch.__required_keys__ == {"input_ids", "attention_mask", "labels", "example_id"}
    assert DistillBatch.__required_keys__ == TrainBatch.__required_keys__ | set(TEACHER_KEYS)
    assert EvalBatch.__optional_keys__ == OPTION_KEYS | {"candidate_ids"} | set(EXAMPLE_FACTS)
    assert EvalOutput.__optional_keys__ == {"scoring"} | set(EXAMPLE_FACTS)
    assert IGNORE_INDEX == -100 == torch.nn.CrossEntropyLoss().ignore_index


def test_a_training_batch_has_exactly_the_train_keys(tiny_tokenizer):
    examples = [InstructionExample("i0", "Say hi.", "", "hi"), InstructionExample("i1", "Count.", "", "1 2")]
    batch = batch_of(examples, tiny_tokenizer)
    assert set(batch) == TrainBatch.__required_keys__
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()


def test_response_positions_are_the_positions_the_batch_mask_keeps(tiny_tokenizer):
    """One home for "which positions are the response": an example's positions (the store's
    rows of it) are its row of the collated batch's mask, whatever the padding after them."""
    assert response_positions([IGNORE_INDEX, 5, 0, IGNORE_INDEX, 7]) == [1, 2, 4]  # 0 is a token
    assert response_positions([IGNORE_INDEX, IGNORE_INDEX]) == []
    items = [encode(ex, tiny_tokenizer, PromptTemplate(), 128, TruncationReport()) for ex in QUESTIONS]
    mask = response_mask(collate(items, tiny_tokenizer.pad_token_id)["labels"])
    for row, item in zip(mask, items, strict=True):
        assert response_positions(item.labels) == row.nonzero().flatten().tolist() != []


def test_a_token_scored_batch_has_the_eval_keys_and_candidates(tiny_tokenizer):
    batch = batch_of(QUESTIONS, tiny_tokenizer)
    assert set(batch) == EvalBatch.__required_keys__ | {"candidate_ids"} | set(EXAMPLE_FACTS)
    assert batch["candidate_ids"][1, 2] == CANDIDATE_PAD  # q1 has two options


def test_an_option_scored_batch_has_the_eval_keys_and_option_rows(tiny_tokenizer):
    template = PromptTemplate(answer="text", scoring="option_loglik")
    batch = batch_of(QUESTIONS, tiny_tokenizer, template)
    assert set(batch) == EvalBatch.__required_keys__ | OPTION_KEYS | set(EXAMPLE_FACTS)


class Uniform(MethodModule):
    """Equal logits everywhere: the evaluation's output, not its values, is under test."""

    def logits_at(self, batch, select):
        return torch.zeros(int(select.sum()), 300)


@pytest.mark.parametrize("scoring", ["letter", "option_loglik"])
def test_evaluation_returns_exactly_an_eval_output(tiny_tokenizer, scoring):
    answer = "letter" if scoring == "letter" else "text"
    batch = batch_of(QUESTIONS, tiny_tokenizer, PromptTemplate(answer=answer, scoring=scoring))
    out = Uniform().evaluate(batch)
    assert set(out) == EvalOutput.__required_keys__ | EvalOutput.__optional_keys__
    assert out["scoring"] == scoring and out["example_id"] == ["q0", "q1"]
