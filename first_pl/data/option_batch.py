"""Evaluation rows for option log-likelihood scoring: one `prompt + option` row per option.

lm-evaluation-harness scores a multiple-choice question by the log-likelihood of each option's
text as a continuation of the prompt. That needs the logits at every option token, so each
option is its own row: `[R, L]` with R the number of options in the batch, labels (already
shifted, as in the training batch) on the option's tokens only, and two index vectors that
place row r at example `option_example[r]`, option `option_choice[r]`. Rows of one example share
its prompt tokens, so an option's score depends on nothing but its own tokens.
"""

from __future__ import annotations

import torch

from first_pl.data.batch import IGNORE_INDEX


def option_rows(prompt: list[int], options: list[list[int]]) -> list[tuple[list[int], list[int]]]:
    """`(input_ids, labels)` of each `prompt + option` row; labels shifted onto the option tokens."""
    rows = []
    for option in options:
        input_ids = prompt + option
        labels = [IGNORE_INDEX] * (len(prompt) - 1) + option + [IGNORE_INDEX]
        rows.append((input_ids, labels))
    return rows


def collate_options(
    prompts: list[list[int]], options: list[list[list[int]]], pad_id: int
) -> dict[str, torch.Tensor]:
    """The `option_*` keys of an evaluation batch (`first_pl.data.batch.EvalBatch`),
    right-padded with `pad_id`."""
    rows, example, choice = [], [], []
    for index, (prompt, opts) in enumerate(zip(prompts, options, strict=True)):
        rows += option_rows(prompt, opts)
        example += [index] * len(opts)
        choice += list(range(len(opts)))
    length = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), length), dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    for r, (ids, row_labels) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        attention[r, : len(ids)] = 1
        labels[r, : len(ids)] = torch.tensor(row_labels)
    return {
        "option_input_ids": input_ids,
        "option_attention_mask": attention,
        "option_labels": labels,
        "option_example": torch.tensor(example),
        "option_choice": torch.tensor(choice),
    }
