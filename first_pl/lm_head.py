"""Logits at chosen positions only: the decoder's final hidden states there, times the LM head.

Training, evaluation and teacher extraction never compute `[B, L, V]` logits: at a 49k vocabulary
those cost most of a step's memory, and only the response positions (or the answer position)
are read. They run the decoder, keep the `P` rows they need, and apply the output embedding to
those rows alone. That is the model's own logits only for a model whose `forward` does nothing
after the head; a model that soft-caps (Gemma 2 and 3: `final_logit_softcapping`) or scales
(Cohere: `logit_scale`, Granite: `logits_scaling`) its logits would give wrong probabilities
here, so such a model is refused by name, for a student as for a teacher, instead of training
or extracting on them silently.
"""

from __future__ import annotations

import torch
from torch import nn

from first_pl.context_cache import SharedRows, shared_forward
from first_pl.prefix.split import prefix_of

# Config attributes of Hugging Face models that post-process the LM head's output, and the
# value at which each does nothing.
LOGIT_POSTPROCESSING = {"final_logit_softcapping": None, "logit_scale": 1.0, "logits_scaling": 1.0}


def check_plain_lm_head(model: nn.Module) -> None:
    """Raise `NotImplementedError` if `model`'s config post-processes its logits."""
    config = getattr(model, "config", None)
    for name, neutral in LOGIT_POSTPROCESSING.items():
        value = getattr(config, name, neutral)
        if value is not None and value != neutral:
            raise NotImplementedError(
                f"{type(model).__name__} post-processes its logits ({name}={value!r} in its "
                f"config), which first_pl's logits (the bare LM head on the positions it reads, "
                f"first_pl.lm_head) do not apply: its probabilities would be wrong; use a model "
                f"whose config has no {name}"
            )


def hidden_at(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, select: torch.Tensor
) -> torch.Tensor:
    """Final hidden states `[P, H]` at the positions where `select` `[B, L]` is true, in (b, t)
    order. A model with a frozen prefix (`first_pl.prefix`) starts from the prefix's states."""
    prefix = prefix_of(model)
    if prefix is None:
        hidden = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask)
    else:
        states = prefix(input_ids, attention_mask).to(model.dtype)
        hidden = model.get_decoder()(inputs_embeds=states, attention_mask=attention_mask)
    return hidden.last_hidden_state[select]


def head_logits(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """Logits `[P, V]` of hidden states `[P, H]`, in the head's dtype; refuses a model whose
    own logits are not the bare head's (`check_plain_lm_head`)."""
    check_plain_lm_head(model)
    return model.get_output_embeddings()(hidden)


def logits_at(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, select: torch.Tensor
) -> torch.Tensor:
    """Logits `[P, V]` at the positions where `select` `[B, L]` is true, in (b, t) order."""
    return head_logits(model, hidden_at(model, input_ids, attention_mask, select))


def shared_logits_at(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: SharedRows
) -> torch.Tensor:
    """`logits_at` of the full rows `input_ids` at the positions `rows.select` marks, computed
    with each context once (`first_pl.context_cache`); the full rows serve only the memo of a
    model with a frozen prefix, which remembers them whole."""
    prefix = prefix_of(model)
    if prefix is None:
        context, continuation = rows.context_ids, rows.continuation_ids
    else:
        states = prefix.shared_states(input_ids, attention_mask, rows)
        context, continuation = (part.to(model.dtype) for part in states)
    _, hidden = shared_forward(model.get_decoder(), context, continuation, rows)
    return head_logits(model, hidden[rows.select])
