"""Evaluation rows for option log-likelihood scoring: one `prompt + option` row per option.

lm-evaluation-harness scores a multiple-choice question by the log-likelihood of each option's
text as a continuation of the prompt. That needs the logits at every option token, so each
option is its own row: `[R, L]` with R the number of rows in the batch, labels (already
shifted, as in the training batch) on the option's tokens only, and index vectors that place
row r at example `option_example[r]`, option `option_choice[r]`, with the factor
`option_scale[r]` its summed log-likelihood enters the option's score with. Rows of one
example share its prompt tokens, so an option's score depends on nothing but its own tokens.

Rows with the same `option_context[r]` have the same tokens before their first label (one
example's prompt; the PMI premise, the same for every example). `shared_rows` splits the rows
there into contexts and continuations (`first_pl.context_cache.SharedRows`), so an evaluation
runs each context once. Prompt and option are tokenised apart and concatenated as ids, so the
split is exact: a full row is its context's ids followed by its continuation's, token for token.

`option_pmi` adds a second row per option, `domain premise + option`, at scale -1: the
option's score is then log P(option | prompt) - log P(option | premise), the
domain-conditional PMI of Holtzman et al. 2021 ("Surface Form Competition"), which takes away
how likely the option's words are as an answer to anything (their surface form: a common or
short phrase) and leaves what the question adds.
"""

from __future__ import annotations

import torch

from first_pl.context_cache import SharedRows
from first_pl.data.batch import IGNORE_INDEX


def option_divisor(scoring: str, text: str, tokens: int) -> float:
    """What an option's summed log-likelihood is divided by under `scoring`.

    `text` is the option as the task gives it (without `template.answer_prefix`), `tokens` the
    number of tokens of its continuation `answer_prefix + text`:

    - ``option_loglik`` / ``option_pmi``: 1, the sum (lm-evaluation-harness's acc; PMI is a
      difference of sums);
    - ``option_loglik_norm_tokens``: `tokens`, so it depends on the tokenizer and favours an
      option split into many likely pieces (a long word after its first token is cheap);
    - ``option_loglik_norm_chars``: `len(text)` in characters, exactly lm-evaluation-harness's
      acc_norm (`lls / [len(choice) for choice in doc_to_choice(doc)]`: the delimiter " " it
      puts before each continuation is not counted);
    - ``option_loglik_norm_bytes``: `len(text.encode("utf-8"))`, lm-evaluation-harness's
      acc_bytes (the same as characters for ASCII text).
    """
    if scoring in ("option_loglik", "option_pmi"):
        return 1.0
    if scoring == "option_loglik_norm_tokens":
        return float(tokens)
    if scoring == "option_loglik_norm_chars":
        return float(len(text))
    if scoring == "option_loglik_norm_bytes":
        return float(len(text.encode("utf-8")))
    raise ValueError(f"{scoring!r} is not an option scoring")


def option_rows(prompt: list[int], options: list[list[int]]) -> list[tuple[list[int], list[int]]]:
    """`(input_ids, labels)` of each `prompt + option` row; labels shifted onto the option tokens."""
    rows = []
    for option in options:
        input_ids = prompt + option
        labels = [IGNORE_INDEX] * (len(prompt) - 1) + option + [IGNORE_INDEX]
        rows.append((input_ids, labels))
    return rows


def collate_options(
    prompts: list[list[int]],
    options: list[list[list[int]]],
    scales: list[list[float]],
    domains: list[list[int]],
    pad_id: int,
) -> dict[str, torch.Tensor]:
    """The `option_*` keys of an evaluation batch (`first_pl.data.batch.EvalBatch`),
    right-padded with `pad_id`: a row per option at its scale, and where an example has a
    domain premise a row `premise + option` at minus that scale; rows after the same tokens
    share an `option_context`."""
    rows, example, choice, scale, shared = [], [], [], [], []
    contexts: dict[tuple[int, ...], int] = {}
    for index, (prompt, opts, factors, domain) in enumerate(zip(prompts, options, scales, domains, strict=True)):
        for context, sign in ((prompt, 1.0), (domain, -1.0)) if domain else ((prompt, 1.0),):
            rows += option_rows(context, opts)
            shared += [contexts.setdefault(tuple(context), len(contexts))] * len(opts)
            example += [index] * len(opts)
            choice += list(range(len(opts)))
            scale += [sign * factor for factor in factors]
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
        "option_scale": torch.tensor(scale, dtype=torch.float32),
        "option_context": torch.tensor(shared),
    }


def shared_rows(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor, row_context: torch.Tensor
) -> SharedRows | None:
    """The option rows `[R, L]` (`collate_options`'s) as contexts and continuations.

    A context is a row's tokens before its first label, that is its prompt without the last
    token (labels are shifted: the last prompt position predicts the first option token); the
    continuation is the rest of the row, so the positions read are all in the continuation.
    None when a prompt is a single token (an empty context): those rows are scored whole.
    """
    labelled = labels != IGNORE_INDEX
    start = labelled.long().argmax(dim=1)  # the first labelled position: the context's length
    length = attention_mask.sum(dim=1)
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    width = int(row_context.max()) + 1
    context_row = torch.full((width,), input_ids.shape[0], device=input_ids.device)
    context_row = context_row.scatter_reduce(0, row_context, rows, reduce="amin")
    context_length = start[context_row]
    if int(context_length.min()) == 0:
        return None
    span = torch.arange(int(context_length.max()), device=input_ids.device)
    context_mask = (span[None] < context_length[:, None]).long()
    steps = torch.arange(int((length - start).max()), device=input_ids.device)
    positions = start[:, None] + steps[None]
    continuation_mask = (steps[None] < (length - start)[:, None]).long()
    index = positions.clamp(max=input_ids.shape[1] - 1)
    return SharedRows(
        context_ids=input_ids[context_row, : span.shape[0]] * context_mask,
        context_mask=context_mask,
        context_row=context_row,
        row_context=row_context,
        continuation_ids=input_ids.gather(1, index) * continuation_mask,
        continuation_mask=continuation_mask,
        positions=positions,
        select=labelled.gather(1, index) & continuation_mask.bool(),
    )
