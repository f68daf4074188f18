"""Multiple-choice scores from a model's log-probabilities, and the `EvalOutput` they give.

A scoring (`PromptTemplate.scoring`) turns the model's output into one log-space score per
option, `[B, C]`:

- token scorings ('letter', 'first_token'): the full-vocab log-probability of the option's
  token at the answer position;
- option scorings (`first_pl.data.template.OPTION_SCORINGS`): the sum of the log-probabilities
  of the option's tokens after the prompt (lm-evaluation-harness's acc), divided by the
  option's tokens, characters (acc_norm) or UTF-8 bytes (acc_bytes), or less its sum after a
  task-independent domain premise (domain-conditional PMI). The data side says how, per row
  (`option_scale`, `first_pl.data.option_batch`), so one reduction serves every form.

Everything after that is shared (`choice_output`): the prediction is the argmax in log space
(probabilities of every option can underflow to 0 in float32), `candidate_probs` is the
exponentiated score and the `confidence` the chosen option's, and `candidate_logprobs` keeps the
scores themselves, from which the evaluation takes the softmax over the options (the
"renormalised" confidence, without the underflow of renormalising probabilities).
"""

from __future__ import annotations

import torch

from first_pl.data.batch import EXAMPLE_FACTS, EvalBatch, EvalOutput
from first_pl.data.template import RATIO_SCORINGS


def token_scores(
    log_probs: torch.Tensor, candidate_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(scores [B, C], mask [B, C])`: `log_probs [B, V]` at each candidate id (-1 pads)."""
    mask = candidate_ids >= 0
    return log_probs.gather(1, candidate_ids.clamp_min(0)), mask


def target_log_probs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Full-vocab log-probability `[P]` of each target token under `logits [P, V]`.

    `logit - logsumexp` instead of a log-softmax: one `[P, V]` tensor fewer, and option rows
    have many positions.
    """
    logits = logits.float()
    return logits.gather(1, targets.unsqueeze(1)).squeeze(1) - torch.logsumexp(logits, dim=1)


def option_scores(
    position_log_probs: torch.Tensor,
    position_row: torch.Tensor,
    option_example: torch.Tensor,
    option_choice: torch.Tensor,
    option_scale: torch.Tensor,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(scores [B, C], mask [B, C])` from the log-probabilities of the option tokens.

    `position_log_probs [P]` belong to option rows `position_row [P]`; row r is option
    `option_choice[r]` of example `option_example[r]`. A row contributes the sum of its
    positions times `option_scale[r]`; an option's score is the sum over its rows (one row,
    or two for PMI: the conditional one at +1 and the domain-premise one at -1).
    """
    rows = option_example.shape[0]
    total = torch.zeros(rows, dtype=torch.float32, device=position_log_probs.device)
    total.index_add_(0, position_row, position_log_probs.float())
    total = total * option_scale.float()
    width = int(option_choice.max()) + 1 if rows else 0
    scores = torch.zeros((batch_size, width), device=total.device)
    scores.index_put_((option_example, option_choice), total, accumulate=True)
    mask = torch.zeros((batch_size, width), dtype=torch.bool, device=total.device)
    mask[option_example, option_choice] = True
    return scores.masked_fill(~mask, float("-inf")), mask


def choice_output(
    scores: torch.Tensor, mask: torch.Tensor, batch: EvalBatch, scoring: str | None = None
) -> EvalOutput:
    """The `EvalOutput` (`first_pl.data.batch`) of log-space option scores, with the batch's
    per-example facts (`EXAMPLE_FACTS`) passed on for the evaluation's checks.

    A PMI score (`RATIO_SCORINGS`) is a log-ratio, not a log-probability, so there is no
    full-vocabulary probability of the chosen option: its candidate probabilities are the
    softmax over the options (both confidence kinds then agree)."""
    scores = scores.float().masked_fill(~mask, float("-inf"))
    pred = scores.argmax(dim=1)
    probs = scores.softmax(dim=1) if scoring in RATIO_SCORINGS else scores.exp()
    output = EvalOutput(
        candidate_logprobs=scores,
        candidate_probs=probs,
        candidate_mask=mask,
        gold=batch["gold"],
        pred=pred,
        confidence=probs.gather(1, pred.unsqueeze(1)).squeeze(1),
        correct=pred == batch["gold"],
        example_id=batch["example_id"],
    )
    if scoring is not None:
        output["scoring"] = scoring
    for key in EXAMPLE_FACTS:
        if key in batch:
            output[key] = batch[key]
    return output
