"""Rows that share a context: the context runs once, each continuation against its keys and values.

Option scoring asks for the log-likelihood of every option of a question after the same
prompt. Scored as full `prompt + option` rows, the prompt (most of each row) is recomputed once
per option. Here a batch of such rows is split (`SharedRows`, built by
`first_pl.data.option_batch.shared_rows`) into its distinct contexts, each the prompt without
its last token, and one continuation per row, the prompt's last token then the option. The
decoder runs the contexts once with a key/value cache, then every continuation with the cache
of its own context (`ContextLayer`), at positions that go on from its context's length and with
the 2-D mask `[context mask, continuation mask]`, so the right padding of a shorter context is
never attended. Under causal attention that is the full row's computation, reordered: the
hidden states at every continuation position equal the full row's, to float rounding.

The prompt's last token opens the continuation (rather than closing the context) so that every
position whose logits score an option token lies in the continuation: the context needs no
head, and a continuation row reads like a full row's tail.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

# Continuation rows per forward: chunks of rows of similar length pad little, and a chunk's copy
# of its contexts' keys and values (`ContextLayer`) stays small.
CHUNK_ROWS = 64


@dataclass
class SharedRows:
    """R right-padded rows `context[row_context[r]] + continuation[r]`.

    context_ids / context_mask: long [Q, Tq], the distinct contexts, right-padded.
    context_row: long [Q], one row of each context (the memo of `first_pl.prefix` reads a
        context's states from that row's).
    row_context: long [R], the context of each row.
    continuation_ids / continuation_mask: long [R, Tc], right-padded.
    positions: long [R, Tc], each continuation token's position in its full row (its
        context's length onwards).
    select: bool [R, Tc], the positions whose logits are read (the option's tokens), in the
        same (row, position) order as in the full rows.
    """

    context_ids: torch.Tensor
    context_mask: torch.Tensor
    context_row: torch.Tensor
    row_context: torch.Tensor
    continuation_ids: torch.Tensor
    continuation_mask: torch.Tensor
    positions: torch.Tensor
    select: torch.Tensor

    def subset(self, rows: torch.Tensor) -> SharedRows:
        """The rows `rows` (sorted row indices) with only the contexts they use, renumbered."""
        contexts, row_context = torch.unique(self.row_context[rows], return_inverse=True)
        return SharedRows(
            context_ids=self.context_ids[contexts],
            context_mask=self.context_mask[contexts],
            context_row=self.context_row[contexts],
            row_context=row_context,
            continuation_ids=self.continuation_ids[rows],
            continuation_mask=self.continuation_mask[rows],
            positions=self.positions[rows],
            select=self.select[rows],
        )


class ContextLayer(DynamicLayer):
    """One attention layer's cache for continuations of shared contexts.

    Holds the contexts' keys and values `[Q, heads, Tq, head_dim]` and returns, for a
    continuation batch, each row's context followed by the row's own new keys. It stores
    nothing: the per-row copy of the context lives only while its layer runs, so the memory of
    the expansion is one layer's, not the model's.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, row_context: torch.Tensor) -> None:
        super().__init__()
        self.keys, self.values, self.row_context = keys, values, row_context
        self.device = keys.device
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys = torch.cat([self.keys[self.row_context], key_states], dim=-2)
        values = torch.cat([self.values[self.row_context], value_states], dim=-2)
        return keys, values


def shares_context(decoder: nn.Module) -> bool:
    """Whether `decoder`'s cache is plain full attention (`DynamicLayer` in every layer), the
    only kind `ContextLayer` stands in for; a sliding-window or recurrent layer is not."""
    cache = DynamicCache(config=decoder.config)
    return all(type(layer) is DynamicLayer for layer in cache.layers)


def shared_forward(
    decoder: nn.Module, context: torch.Tensor, continuation: torch.Tensor, rows: SharedRows, chunk: int = CHUNK_ROWS
) -> tuple[torch.Tensor, torch.Tensor]:
    """`decoder`'s last hidden states of the contexts `[Q, Tq, H]` and of the continuations
    `[R, Tc, H]` (zeros past each continuation's end), from token ids (long) or input
    embeddings (float) of the same shapes.

    The continuations run `chunk` rows at a time, shortest first, each chunk only as wide as
    its longest: options differ in length (a word, a sentence), and one width for all would
    spend most of the continuation forward on padding.
    """
    key = "input_ids" if not context.is_floating_point() else "inputs_embeds"
    first = decoder(**{key: context}, attention_mask=rows.context_mask, use_cache=True)
    cached = [(layer.keys, layer.values) for layer in first.cache.layers]
    lengths = rows.continuation_mask.sum(dim=1)
    hidden = None
    for part in lengths.argsort(stable=True).split(chunk):
        width = int(lengths[part].max())
        row_context = rows.row_context[part]
        mask = torch.cat([rows.context_mask[row_context], rows.continuation_mask[part, :width]], dim=1)
        cache = Cache(layers=[ContextLayer(keys, values, row_context) for keys, values in cached])
        states = decoder(
            **{key: continuation[part, :width]},
            attention_mask=mask,
            position_ids=rows.positions[part, :width],
            cache=cache,
            use_cache=True,
        ).last_hidden_state
        if hidden is None:
            hidden = states.new_zeros(*continuation.shape[:2], states.shape[-1])
        hidden[part, :width] = states
    return first.last_hidden_state, hidden
