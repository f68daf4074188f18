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
from first_pl.data.option_batch import collate_options, option_divisor
from first_pl.data.template import OPTION_SCORINGS, PromptTemplate
from first_pl.data.truncation import fit_prompt
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
    # rows `option_prompt + option_ids[i]` (each at `option_scale[i]`) and, for `option_pmi`,
    # `domain_ids + option_ids[i]`, instead of `candidate_ids`.
    scoring: str = ""
    option_ids: list[list[int]] = field(default_factory=list)
    option_prompt: list[int] = field(default_factory=list)
    option_scale: list[float] = field(default_factory=list)
    domain_ids: list[int] = field(default_factory=list)
    # What the evaluation reports per example (`first_pl.data.batch.EXAMPLE_FACTS`): prompt
    # tokens cut from what it scores, and each option's text and continuation length.
    truncated_tokens: int = 0
    choices: tuple[str, ...] = ()
    choice_tokens: list[int] = field(default_factory=list)


@dataclass
class TruncationReport:
    """How many examples lost tokens to `max_length` (reported, never silent).

    A prompt loses tokens from the middle of its context and question, keeping the
    instruction before them and the options after them (`first_pl.data.truncation`);
    `protected` counts the examples whose context and question did not fit at all, so the
    instruction or the options lost tokens too. A response longer than `max_length - 1` tokens
    (instruction data) is cut on the right and so loses its EOS: the model is not taught to
    stop where the cut falls. All are counted here.
    """

    examples: int = 0
    truncated: int = 0
    tokens_dropped: int = 0
    protected: int = 0
    responses_truncated: int = 0
    response_tokens_dropped: int = 0

    def summary(self, what: str) -> str:
        text = (
            f"{what}: {self.truncated} of {self.examples} examples truncated to fit max_length "
            f"({self.tokens_dropped} prompt tokens dropped from the middle of the context and question"
        )
        if self.protected:
            text += f"; in {self.protected} of them these did not fit at all and the instruction or options lost tokens too"
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
    model is trained and evaluated on), cutting a prompt that does not fit from its middle
    (`first_pl.data.truncation`) and a response longer than `max_length - 1` on the right;
    both are counted in `report`."""
    if isinstance(example, MCExample):
        prompt, response = template.mc_prompt(example), template.mc_response(example)
        fields = (example.context, example.question.strip())
    else:
        prompt, response = template.instruction_prompt(example), template.instruction_response(example)
        fields = (example.instruction, example.input)
    prompt = template.chat_prompt(tokenizer, prompt)
    full_response = tokenizer.encode(response, add_special_tokens=False) + [tokenizer.eos_token_id]
    response_ids = full_response[: max(1, max_length - 1)]
    response_cut = len(full_response) - len(response_ids)
    fitted = fit_prompt(tokenizer, prompt, fields, max_length - len(response_ids))
    prompt_ids = fitted.ids
    input_ids = prompt_ids + response_ids
    labels = [IGNORE_INDEX] * (len(prompt_ids) - 1) + response_ids + [IGNORE_INDEX]
    encoded = Encoded(example_id=example.id, input_ids=input_ids, labels=labels)
    scored = fitted  # the prompt the evaluation scores the options after
    if isinstance(example, MCExample):
        encoded.answer_position = len(prompt_ids) - 1
        encoded.gold = example.answer
        encoded.scoring = template.resolved_scoring
        encoded.choices = tuple(example.choices)
        encoded.choice_tokens = [
            len(tokenizer.encode(template.answer_prefix + choice, add_special_tokens=False)) for choice in example.choices
        ]
        if encoded.scoring in OPTION_SCORINGS:
            encoded.option_ids = template.option_continuations(tokenizer, example)
            longest = max(len(option) for option in encoded.option_ids)
            # option rows replace the response by an option: fit the prompt to the longest
            if longest > len(response_ids):
                scored = fit_prompt(tokenizer, prompt, fields, max(1, max_length - longest))
            encoded.option_prompt = scored.ids
            encoded.option_scale = [
                1.0 / option_divisor(encoded.scoring, text, len(ids))
                for text, ids in zip(example.choices, encoded.option_ids, strict=True)
            ]
            if encoded.scoring == "option_pmi":
                encoded.domain_ids = template.domain_premise_ids(tokenizer)
        else:
            encoded.candidate_ids = template.candidate_ids(tokenizer, example)
        encoded.truncated_tokens = scored.dropped
    report.examples += 1
    dropped = max(fitted.dropped, scored.dropped)
    if dropped or response_cut:
        report.truncated += 1
    report.tokens_dropped += dropped
    report.protected += bool(fitted.protected or scored.protected)
    if response_cut:
        report.responses_truncated += 1
        report.response_tokens_dropped += response_cut
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
    out["truncated_tokens"] = torch.tensor([item.truncated_tokens for item in items])
    out["choices"] = [item.choices for item in items]
    out["choice_tokens"] = torch.zeros((batch, max(len(item.choices) for item in items)), dtype=torch.long)
    for row, item in enumerate(items):
        out["choice_tokens"][row, : len(item.choice_tokens)] = torch.tensor(item.choice_tokens)
    if scorings[0] in OPTION_SCORINGS:
        out.update(
            collate_options(
                [item.option_prompt for item in items],
                [item.option_ids for item in items],
                [item.option_scale for item in items],
                [item.domain_ids for item in items],
                pad_id,
            )
        )
        return out
    width = max(len(item.candidate_ids) for item in items)
    candidates = torch.full((batch, width), CANDIDATE_PAD, dtype=torch.long)
    for row, item in enumerate(items):
        candidates[row, : len(item.candidate_ids)] = torch.tensor(item.candidate_ids)
    out["candidate_ids"] = candidates
    return out
