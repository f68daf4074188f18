"""One multiple-choice question answered exactly as the evaluation would score it.

The question goes through the same `PromptTemplate`, `encode` and `collate` as the data modules
and the same `MethodModule.evaluate` as `first-pl test`, so the answer and its confidence are
what `first-pl test` would report for this question (`first-pl ask` prints them). Under the
token scorings the confidence is the full-vocab probability of the chosen answer token (the
letter, or the option's first token for text answers: the paper's semantics); under the option
scorings it is the exponential of the chosen option's score (the probability of its tokens,
per token for `option_loglik_norm`). The value renormalised over the candidates is kept
beside it.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Literal

import torch

from first_pl.data.template import PromptTemplate
from first_pl.data.tokenize import TruncationReport, collate, encode
from first_pl.methods.base import MethodModule
from first_pl.tasks.base import MCExample


class AskError(ValueError):
    """A question the model cannot be asked; the message says which argument is wrong."""


@dataclass
class Answer:
    """The model's answer to one question and whether it is confident enough to give it."""

    letter: str
    text: str
    confidence: float
    renormalized: float
    decision: Literal["answer", "abstain"]
    probabilities: dict[str, float]
    scoring: str = "letter"
    # The token whose full-vocab probability is the confidence (the letter's, or the option's
    # first token for text answers); None for option scorings, which score whole options.
    token: str | None = None
    tokens_dropped: int = 0  # prompt tokens cut (from the middle of the question) to fit max_length


def check_question(question: str, choices: list[str], letters: str) -> None:
    """Refuse a question the evaluation would answer without meaning (see `check_choices`)."""
    if not question.strip():
        raise AskError("--question is empty; give the question to ask")
    check_choices(choices, letters)


def check_choices(choices: list[str], letters: str) -> None:
    """Between 2 and one-per-letter options, none empty and no two equal (of two equal options
    one letter would win over its twin by the letters' own probabilities)."""
    if len(choices) < 2:
        raise AskError(f"--choices needs at least 2 options, got {len(choices)}: {choices}")
    if len(choices) > len(letters):
        raise AskError(
            f"--choices has {len(choices)} options but the template has only {len(letters)} "
            f"letters ({letters!r}); pass fewer choices or more --template.letters"
        )
    empty = [i for i, choice in enumerate(choices) if not choice.strip()]
    if empty:
        raise AskError(f"--choices has empty options at positions {empty}: {choices}")
    counts = Counter(choice.strip() for choice in choices)
    repeated = sorted(choice for choice, n in counts.items() if n > 1)
    if repeated:
        raise AskError(f"--choices lists the same option more than once: {repeated}")


@torch.no_grad()
def answer_question(
    module: MethodModule,
    tokenizer,
    question: str,
    choices: list[str],
    template: PromptTemplate,
    threshold: float = 0.5,
    abstain_on: Literal["full", "renormalized"] = "full",
    context: str = "",
    max_length: int = 256,
) -> Answer:
    """Candidate-restricted prediction at the answer position, as in evaluation."""
    check_question(question, choices, template.letters)
    # `answer` is unknown; 0 only fills the gold field, which `evaluate` carries through unused.
    example = MCExample("ask", question, tuple(choices), 0, context=context)
    report = TruncationReport()
    item = encode(example, tokenizer, template, max_length, report)
    if report.tokens_dropped:
        warnings.warn(truncation_message(report.tokens_dropped, max_length), stacklevel=2)
    device = next(module.parameters()).device
    batch = {
        k: v.to(device) if isinstance(v, torch.Tensor) else v
        for k, v in collate([item], tokenizer.pad_token_id).items()
    }
    output = module.evaluate(batch)
    probs = output["candidate_probs"][0].float().cpu()
    pred = int(output["pred"][0])
    token = tokenizer.decode([item.candidate_ids[pred]]) if item.candidate_ids else None
    confidence = float(output["confidence"][0])
    renormalized = confidence / float(probs.sum())
    decisive = confidence if abstain_on == "full" else renormalized
    return Answer(
        letter=template.letters[pred],
        text=choices[pred],
        confidence=confidence,
        renormalized=renormalized,
        decision="answer" if decisive >= threshold else "abstain",
        probabilities={template.letters[i]: float(p) for i, p in enumerate(probs)},
        scoring=item.scoring,
        token=token,
        tokens_dropped=report.tokens_dropped,
    )


def truncation_message(tokens_dropped: int, max_length: int) -> str:
    """What `ask` says when the question did not fit: the model answered without part of it."""
    return (
        f"the prompt is {tokens_dropped} tokens longer than --max_length {max_length}: "
        f"{tokens_dropped} tokens were cut from the middle of the question and the model answered "
        f"without them; give "
        f"--max_length {max_length + tokens_dropped} to ask the whole question"
    )
