"""How a method scores multiple-choice options: the evaluation half of `MethodModule`.

Two scorings exist (`first_pl.data.template`): a token scoring reads the full-vocabulary
distribution at each example's answer position and keeps the candidates' tokens (the paper's
confidence); an option scoring sums each option's log-likelihood after the prompt (as
lm-evaluation-harness does). Option rows share their prompt, so the prompt runs once and each
option against its keys and values (`first_pl.context_cache`) wherever the model allows it.
"""

from __future__ import annotations

import torch

from first_pl.context_cache import shares_context
from first_pl.data.batch import EvalBatch, EvalOutput, response_mask
from first_pl.data.option_batch import shared_rows
from first_pl.data.template import OPTION_SCORINGS
from first_pl.lm_head import shared_logits_at
from first_pl.methods.scoring import choice_output, option_scores, target_log_probs, token_scores


def candidate_output(log_probs: torch.Tensor, batch: EvalBatch) -> EvalOutput:
    """Prediction restricted to the candidate tokens at the answer position (token scorings).

    `log_probs` is the full-vocab log-softmax at each example's answer position `[B, V]`; the
    confidence is the chosen candidate's full-vocab probability (the paper's semantics). The
    argmax is taken over log-probabilities (`scoring.choice_output`): below about -104 every
    probability is 0 in float32, and an argmax over those zeros would always pick the first.
    """
    scores, mask = token_scores(log_probs, batch["candidate_ids"])
    return choice_output(scores, mask, batch, batch.get("scoring"))



class MultipleChoiceScoring:
    """Mixed into `MethodModule`, which provides `model`, `device_mesh` and `logits_at`."""

    def evaluate(self, batch: EvalBatch) -> EvalOutput:
        """Score the options of each example as its task's `template.scoring` says."""
        if batch.get("scoring") in OPTION_SCORINGS:
            return self.option_evaluate(batch)
        select = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
        rows = torch.arange(select.shape[0], device=select.device)
        select[rows, batch["answer_position"]] = True  # one position per row: rows stay in order
        logits = self.logits_at(batch, select).float()
        return candidate_output(torch.log_softmax(logits, dim=-1), batch)

    def option_evaluate(self, batch: EvalBatch) -> EvalOutput:
        """Option log-likelihoods of the `option_*` rows (data/option_batch.py)."""
        select = response_mask(batch["option_labels"])
        position_log_probs = target_log_probs(self.option_logits(batch, select), batch["option_labels"][select])
        scores, mask = option_scores(
            position_log_probs,
            select.nonzero()[:, 0],  # the row of each selected position, in logits_at's order
            batch["option_example"],
            batch["option_choice"],
            batch["option_scale"],
            batch["gold"].shape[0],
        )
        return choice_output(scores, mask, batch, batch["scoring"])

    def option_logits(self, batch: EvalBatch, select: torch.Tensor) -> torch.Tensor:
        """Logits `[P, V]` at the option tokens `select` of the option rows, in (row, position)
        order: each prompt run once and each option against its keys and values
        (`first_pl.context_cache`), or, where that cannot be, the full rows in one forward.

        The full rows serve a model sharded by FSDP (its installed forward is `logits_at`), a
        model whose attention is not plain full attention, a batch with a one-token prompt, and
        a module that has no model but its own `logits_at`.
        """
        rows = {"input_ids": batch["option_input_ids"], "attention_mask": batch["option_attention_mask"]}
        if self.model is not None and self.device_mesh is None and shares_context(self.model.get_decoder()):
            shared = shared_rows(
                rows["input_ids"], rows["attention_mask"], batch["option_labels"], batch["option_context"]
            )
            if shared is not None:
                return shared_logits_at(self.model, rows["input_ids"], rows["attention_mask"], shared)
        return self.logits_at(rows, select)
