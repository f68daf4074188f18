"""The batch contract as code: what a collate function hands a method, and what a method's
evaluation hands the callbacks.

The data modules, the methods, the teacher extraction and the evaluation callback meet at
these dicts only, so each can change without the others (docs/ARCHITECTURE.md describes every
key). They are `TypedDict`s, not classes: Lightning moves a dict to the device key by key and
the methods index it as a dict, while a type checker (and a reader) sees which keys a
function may use. `IGNORE_INDEX` marks the positions no loss and no metric reads; collates write
it and every reader compares with this one constant, as torchtune's collates take their loss's
ignore index so the two agree by construction.

No `from __future__ import annotations` here: `TypedDict` reads `NotRequired` from evaluated
annotations (with string ones, Python 3.11 counts every key as required).
"""

from collections.abc import Sequence
from typing import NotRequired, TypedDict

import torch
from torch import Tensor

IGNORE_INDEX = -100  # torch.nn.functional.cross_entropy's default ignore_index
CANDIDATE_PAD = -1  # `candidate_ids` of an example with fewer options than the widest


class TrainBatch(TypedDict):
    """Prompt + response, right-padded; `labels` already shifted (`labels[b, t]` is the token
    the logits at position t predict), `IGNORE_INDEX` on prompt and padding. Training batches of
    multiple-choice examples also carry the `EvalBatch` keys (one collate builds both)."""

    input_ids: Tensor  # long [B, L]
    attention_mask: Tensor  # long [B, L], 1 on real tokens
    labels: Tensor  # long [B, L]
    example_id: list[str]  # joins with the teacher store


class DistillBatch(TrainBatch):
    """A training batch with the teacher's stored top-k at the same `[B, L]` positions as
    `labels`, 0 where `labels == IGNORE_INDEX`."""

    teacher_ids: Tensor  # long [B, L, k], by descending probability
    teacher_probs: Tensor  # float32 [B, L, k], full-vocab softmax at temperature 1


TEACHER_KEYS = ("teacher_ids", "teacher_probs")  # what a DistillBatch adds to a TrainBatch


class EvalBatch(TrainBatch):
    """A training batch plus what scoring a multiple-choice question needs.

    Token scorings (`letter`, `first_token`) add `candidate_ids`; option scorings
    (`option_loglik`, ...) add one `prompt + option` row per option (two for `option_pmi`), R
    in all, and which rows share their prompt (`option_context`), so that it runs once
    (`first_pl.data.option_batch.shared_rows`). The collate also adds the per-example facts (`EXAMPLE_FACTS`) that the evaluation
    reports: prompt tokens cut, option lengths and texts.
    """

    answer_position: Tensor  # long [B], whose logits predict the answer
    gold: Tensor  # long [B], index of the correct option
    scoring: str  # the task's template.scoring
    candidate_ids: NotRequired[Tensor]  # long [B, C], CANDIDATE_PAD where absent
    option_input_ids: NotRequired[Tensor]  # long [R, L']
    option_attention_mask: NotRequired[Tensor]  # long [R, L']
    option_labels: NotRequired[Tensor]  # long [R, L'], shifted like labels
    option_example: NotRequired[Tensor]  # long [R]: row r is option option_choice[r]
    option_choice: NotRequired[Tensor]  # long [R]   of example option_example[r]
    option_scale: NotRequired[Tensor]  # float32 [R], factor of the row's summed log-likelihood
    option_context: NotRequired[Tensor]  # long [R]: rows with one value share the tokens before their first label
    truncated_tokens: NotRequired[Tensor]  # long [B], prompt tokens cut to fit the length
    choice_tokens: NotRequired[Tensor]  # long [B, C], tokens of answer_prefix + option, 0 where absent
    choices: NotRequired[list[tuple[str, ...]]]  # the options' texts


class EvalOutput(TypedDict):
    """What `validation_step` / `test_step` / `predict_step` return: one score per option in
    log space and the prediction taken from it."""

    candidate_logprobs: Tensor  # float32 [B, C], -inf at padding
    candidate_probs: Tensor  # float32 [B, C], exp of the above
    candidate_mask: Tensor  # bool [B, C], real candidates
    gold: Tensor  # long [B]
    pred: Tensor  # long [B], argmax of candidate_logprobs over real candidates
    confidence: Tensor  # float32 [B], candidate_probs[pred] (full_vocab)
    correct: Tensor  # bool [B]
    example_id: list[str]
    scoring: NotRequired[str]
    truncated_tokens: NotRequired[Tensor]  # the batch's EXAMPLE_FACTS, passed on
    choice_tokens: NotRequired[Tensor]
    choices: NotRequired[list[tuple[str, ...]]]


# Per-example facts an evaluation batch carries to the evaluation callback, through the output.
EXAMPLE_FACTS = ("truncated_tokens", "choice_tokens", "choices")


def response_mask(labels: Tensor) -> Tensor:
    """Bool `[B, L]`: the positions whose label is a response token (the ones a loss reads)."""
    return labels != IGNORE_INDEX


def response_positions(labels: Sequence[int]) -> list[int]:
    """The response positions of one example's label list (`Encoded.labels`), in order: the
    positions `response_mask` keeps, which are the store's rows of that example."""
    return response_mask(torch.as_tensor(labels)).nonzero().flatten().tolist()
