"""Prompt + response tokenisation with labels on the response only, and dynamic padding.

Labels are stored already shifted (docs/ARCHITECTURE.md): `labels[t]` is the token that the
logits at position `t` predict, so the positions that need logits are
`labels != IGNORE_INDEX` with no off-by-one at any call site. `collate` builds the batches of
`first_pl.data.batch`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import PreTrainedTokenizerBase

from first_pl.data.batch import CANDIDATE_PAD, IGNORE_INDEX, EvalBatch, TrainBatch
from first_pl.data.option_batch import collate_options
from first_pl.data.template import OPTION_SCORINGS, PromptTemplate
from first_pl.tasks.base import Example, MCExample


@dataclass
class Encoded:
    """One tokenised example."""

    example_id: str
    input_ids: list[int]
    labels: list[int]
    answer_position: int = -1
    candidate_ids: list[int] = field(default_factory=list)
    gold: int = -1
    # How an evaluation scores the options (`PromptTemplate.scoring`); option scorings score the
    # rows `input_ids[option_start : answer_position + 1] + option_ids[i]` instead of `candidate_ids`.
    scoring: str = ""
    option_ids: list[list[int]] = field(default_factory=list)
    option_start: int = 0


@dataclass
class TruncationReport:
    """How many examples lost tokens to `max_length` (reported, never silent).

    The prompt loses tokens from the left first. A response longer than `max_length - 1`
    tokens (instruction data) is cut on the right and so loses its EOS: the model is not taught
    to stop where the cut falls. Both are counted here.
    """

    examples: int = 0
    truncated: int = 0
    tokens_dropped: int = 0
    responses_truncated: int = 0
    response_tokens_dropped: int = 0

    def summary(self, what: str) -> str:
        text = (
            f"{what}: {self.truncated} of {self.examples} examples truncated to fit max_length "
            f"({self.tokens_dropped} prompt tokens dropped from the left"
        )
        if self.responses_truncated:
            text += (
                f"; {self.responses_truncated} responses cut on the right, losing "
                f"{self.response_tokens_dropped} tokens and their EOS"
            )
        return text + ")"


def encode(
    example: Example,
    tokenizer: PreTrainedTokenizerBase,
    template: PromptTemplate,
    max_length: int,
    report: TruncationReport,
) -> Encoded:
    """Tokenise prompt and response separately (the response tokens are then exactly what the
    model is trained and evaluated on), truncating the prompt from the left if needed and a
    response longer than `max_length - 1` on the right; both are counted in `report`."""
    if isinstance(example, MCExample):
        prompt, response = template.mc_prompt(example), template.mc_response(example)
    else:
        prompt, response = template.instruction_prompt(example), template.instruction_response(example)
    prompt = template.chat_prompt(tokenizer, prompt)
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    full_response = tokenizer.encode(response, add_special_tokens=False) + [tokenizer.eos_token_id]
    response_ids = full_response[: max(1, max_length - 1)]
    response_cut = len(full_response) - len(response_ids)
    overflow = len(prompt_ids) + len(response_ids) - max_length
    report.examples += 1
    if overflow > 0 or response_cut:
        report.truncated += 1
    if response_cut:
        report.responses_truncated += 1
        report.response_tokens_dropped += response_cut
    if overflow > 0:
        report.tokens_dropped += overflow
        prompt_ids = prompt_ids[overflow:]
    input_ids = prompt_ids + response_ids
    labels = [IGNORE_INDEX] * (len(prompt_ids) - 1) + response_ids + [IGNORE_INDEX]
    encoded = Encoded(example_id=example.id, input_ids=input_ids, labels=labels)
    if isinstance(example, MCExample):
        encoded.answer_position = len(prompt_ids) - 1
        encoded.gold = example.answer
        encoded.scoring = template.resolved_scoring
        if encoded.scoring in OPTION_SCORINGS:
            encoded.option_ids = template.option_continuations(tokenizer, example)
            longest = max(len(option) for option in encoded.option_ids)
            # option rows replace the response by an option: drop more prompt if one is longer
            extra = min(len(prompt_ids) - 1, len(prompt_ids) + longest - max_length)
            if extra > 0:
                if not (overflow > 0 or response_cut):  # not yet counted as truncated
                    report.truncated += 1
                report.tokens_dropped += extra
                encoded.option_start = extra
        else:
            encoded.candidate_ids = template.candidate_ids(tokenizer, example)
    return encoded


def collate(items: list[Encoded], pad_id: int) -> TrainBatch | EvalBatch:
    """Right-pad encoded examples into a training batch, or an evaluation batch when every
    example is a multiple-choice question (it has an answer position)."""
    length = max(len(item.input_ids) for item in items)
    batch = len(items)
    input_ids = torch.full((batch, length), pad_id, dtype=torch.long)
    attention = torch.zeros((batch, length), dtype=torch.long)
    labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item.input_ids)
        input_ids[row, :n] = torch.tensor(item.input_ids)
        attention[row, :n] = 1
        labels[row, :n] = torch.tensor(item.labels)
    train = TrainBatch(
        input_ids=input_ids,
        attention_mask=attention,
        labels=labels,
        example_id=[item.example_id for item in items],
    )
    if any(item.answer_position < 0 for item in items):
        return train
    scorings = sorted({item.scoring for item in items})
    if len(scorings) > 1:
        raise ValueError(f"one evaluation batch mixes the scorings {scorings}; batch one task at a time")
    out = EvalBatch(
        **train,
        answer_position=torch.tensor([item.answer_position for item in items]),
        gold=torch.tensor([item.gold for item in items]),
        scoring=scorings[0],
    )
    if scorings[0] in OPTION_SCORINGS:
        prompts = [item.input_ids[item.option_start : item.answer_position + 1] for item in items]
        out.update(collate_options(prompts, [item.option_ids for item in items], pad_id))
        return out
    width = max(len(item.candidate_ids) for item in items)
    candidates = torch.full((batch, width), CANDIDATE_PAD, dtype=torch.long)
    for row, item in enumerate(items):
        candidates[row, : len(item.candidate_ids)] = torch.tensor(item.candidate_ids)
    out["candidate_ids"] = candidates
    return out
