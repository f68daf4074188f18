"""A prompt that does not fit loses the middle of its context and question: the instruction
before them, the question's first facts and its ask, and the options are kept; the cut is
counted per example and per split, and evaluation has its own length."""

from __future__ import annotations

import json

import pytest

from first_pl.data.qa_datamodule import QADataModule
from first_pl.data.template import PromptTemplate
from first_pl.data.tokenize import TruncationReport, encode
from first_pl.data.truncation import body_span, fit_prompt
from first_pl.tasks import BigBench, MCExample

# an instruction before the question, as a task prefix puts it
TEMPLATE = PromptTemplate(question="Name the largest number.\n{context}Question: {question}\n{options}\nAnswer:")
FACTS, ASK = "Japan Italy Spain", "Which is the largest ?"
EXAMPLE = MCExample("x", f"{FACTS} {'apple ' * 40}{ASK}", ("five", "six"), 1)


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def test_the_middle_of_the_question_goes_and_its_head_and_tail_stay(tiny_tokenizer):
    report = TruncationReport()
    item = encode(EXAMPLE, tiny_tokenizer, TEMPLATE, 30, report)
    head = ids(tiny_tokenizer, "Name the largest number.\nQuestion: ")
    body = ids(tiny_tokenizer, EXAMPLE.question)
    tail = ids(tiny_tokenizer, "\nA. five\nB. six\nAnswer:")
    budget = 30 - 2  # the response " B" + EOS
    cut = len(head) + len(body) + len(tail) - budget
    keep = len(body) - cut
    front, back = keep // 2, keep - keep // 2
    prompt = item.input_ids[: item.answer_position + 1]
    assert prompt == head + body[:front] + body[len(body) - back :] + tail
    assert prompt[len(head) : len(head) + 3] == ids(tiny_tokenizer, FACTS)  # the facts it starts with
    assert prompt[-len(tail) - len(ids(tiny_tokenizer, ASK)) : -len(tail)] == ids(tiny_tokenizer, ASK)
    assert item.labels[item.answer_position] == item.candidate_ids[1]
    assert item.truncated_tokens == cut and report.tokens_dropped == cut and report.truncated == 1
    assert report.protected == 0
    assert "tokens dropped from the middle of the context and question" in report.summary("t")


def test_an_example_that_fits_is_tokenised_whole(tiny_tokenizer):
    item = encode(EXAMPLE, tiny_tokenizer, TEMPLATE, 128, TruncationReport())
    assert item.input_ids[: item.answer_position + 1] == ids(tiny_tokenizer, TEMPLATE.mc_prompt(EXAMPLE))
    assert item.truncated_tokens == 0


def test_a_context_is_part_of_what_is_cut(tiny_tokenizer):
    example = MCExample("c", "Which is the largest ?", ("five", "six"), 1, context="Japan " + "apple " * 30 + "Spain")
    prompt = TEMPLATE.mc_prompt(example)
    start, end = body_span(prompt, (example.context, example.question))
    assert prompt[start:end] == example.context + "\nQuestion: " + example.question
    fitted = fit_prompt(tiny_tokenizer, prompt, (example.context, example.question), 25)
    assert len(fitted.ids) == 25 and fitted.protected == 0
    assert fitted.ids[:6] == ids(tiny_tokenizer, "Name the largest number.\nJapan")
    tail = ids(tiny_tokenizer, "A. five\nB. six\nAnswer:")
    ask = ids(tiny_tokenizer, example.question)
    assert fitted.ids[-len(tail) - len(ask) :] == ask + tail


def test_when_the_question_cannot_fit_the_instruction_goes_before_the_options(tiny_tokenizer):
    report = TruncationReport()
    item = encode(EXAMPLE, tiny_tokenizer, TEMPLATE, 12, report)
    head = ids(tiny_tokenizer, "Name the largest number.\nQuestion: ")
    tail = ids(tiny_tokenizer, "\nA. five\nB. six\nAnswer:")
    prompt = item.input_ids[: item.answer_position + 1]
    # the budget of 10 holds the options whole and the end of what stands before the question
    assert prompt == head[len(head) + len(tail) - 10 :] + tail
    assert report.protected == 1
    assert "in 1 of them these did not fit at all and the instruction or options lost tokens too" in report.summary("t")


def long_task(tmp_path, n: int = 40):
    """A BIG-bench task whose every other question is long."""
    examples = [
        {"input": ("Japan " + "apple " * 30 if i % 2 else "") + f"Is {i} the largest ?",
         "target_scores": {"yes": int(i % 3 == 0), "no": int(i % 3 != 0)}}
        for i in range(n)
    ]  # fmt: skip
    folder = tmp_path / "long"
    folder.mkdir()
    (folder / "task.json").write_text(json.dumps({"examples": examples}))
    return BigBench(str(folder))


def test_evaluation_has_its_own_max_length(tmp_path, tiny_model_dir):
    task = long_task(tmp_path)
    dm = QADataModule(tokenizer=str(tiny_model_dir), train_task=task, eval_tasks=[task], max_length=24)
    assert dm.eval_max_length == 2048
    (loader,) = dm.test_dataloader()
    assert all(item.truncated_tokens == 0 for item in loader.dataset)
    training = dm.examples(task, "test")  # the same split at the training length: cut
    assert any(item.truncated_tokens > 0 for item in training)
    short = QADataModule(tokenizer=str(tiny_model_dir), eval_tasks=[task], eval_max_length=24)
    (loader,) = short.test_dataloader()
    cut = [item.truncated_tokens for item in loader.dataset]
    assert cut == [item.truncated_tokens for item in training]
    assert short.truncation[(task.name, "test")].truncated == sum(c > 0 for c in cut) > 0
    uncut = QADataModule(tokenizer=str(tiny_model_dir), eval_tasks=[task], eval_max_length=None, max_length=8)
    (loader,) = uncut.test_dataloader()
    assert all(item.truncated_tokens == 0 for item in loader.dataset)


def test_eval_max_length_below_8_is_refused():
    with pytest.raises(ValueError, match="data.eval_max_length must be >= 8 or null .*got 4"):
        QADataModule(eval_max_length=4)
