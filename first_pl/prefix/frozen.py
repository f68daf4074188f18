"""The frozen prefix: token embeddings and the bottom L decoder layers, computed once per sequence.

Teacher and students that share a pretrained source and freeze its first L layers see, for a
given token sequence, the same hidden states after layer L, whatever they train above it. The
prefix is therefore computed once per distinct sequence and remembered (`memo`, keyed by a hash
of the sequence's token ids), and every later forward of that sequence, in any epoch, stage or
evaluation, runs only the layers above it. SmolLM2 (Llama) has no dropout, so a remembered
state is the state: `hidden` through the memo equals the prefix's own forward, and the logits of
the model above it equal the whole model's (tests/prefix/test_frozen_prefix.py).

Sequences are looked up without their padding (right padding, as `load_tokenizer` sets): under
causal attention a right-padded row's real positions do not depend on the pads. The memo can be
saved to and loaded from an HDF5 file (`first_pl.prefix.store`), so one pipeline stage computes
it for every sequence of the job and the others only read it. A store's rows are read from the
file each time they are asked for, not copied into the memo (a few milliseconds a batch, against
the store's size in memory for the rest of the stage), and the decoder's weights are dropped
while the store answers every row (`offload`): a stage that only reads the store holds neither.

Option rows (`prompt + option`, one per option) are remembered under the same keys, the full
rows', whichever way their states were computed: whole, or as the prompt once and each option
against the prefix's keys and values of the prompt (`shared_states`, `first_pl.context_cache`);
the two agree to float rounding, as two paddings of one row do. A row's states are its states
whatever computed them, so a store written by either serves both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch
from torch import nn

from first_pl.context_cache import SharedRows, shared_forward


def _frozen(decoder: nn.Module) -> nn.Module:
    """The decoder as the prefix runs it: no final norm (the layers above expect un-normalised
    states), no gradients, eval mode."""
    decoder.norm = nn.Identity()
    decoder.requires_grad_(False)
    return decoder.eval()


def sequence_key(ids: torch.Tensor) -> str:
    """A 128-bit hash of a row's token ids (int64, unpadded): the memo's key."""
    data = ids.detach().to("cpu", torch.int64).contiguous().numpy().tobytes()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def right_padded_lengths(attention_mask: torch.Tensor) -> torch.Tensor | None:
    """Each row's length when every row is ones then zeros (right padding), else None."""
    lengths = attention_mask.sum(dim=1)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    expected = (positions.unsqueeze(0) < lengths.unsqueeze(1)).to(attention_mask.dtype)
    return lengths if torch.equal(expected, attention_mask) else None


class FrozenPrefix:
    """Embeddings + the first L decoder layers of a source model, without the final norm.

    Deliberately not an `nn.Module` child of the model it feeds: its weights are the source's,
    frozen and reproducible from `(source, L)`, so they stay out of checkpoints, optimisers,
    FSDP units and precision casts (it always computes in its own dtype, float32 by default,
    and the states are cast to the consumer's dtype).

    Args:
        decoder: a Hugging Face decoder (`LlamaModel`) cut to the first L layers; its final norm
            is replaced by the identity here, since the layers above expect un-normalised states.
        source: what the states are of (model name or path), recorded in saved memos.
        reload: rebuilds the decoder after `offload` (None: an offloaded prefix cannot compute).
    """

    def __init__(
        self, decoder: nn.Module, source: str, reload: Callable[[], nn.Module] | None = None
    ) -> None:
        self._decoder = _frozen(decoder)
        self.source = source
        # Rebuilds the same decoder (same source, L and dtype) after `offload` dropped its weights.
        self.reload = reload
        self.layers = len(decoder.layers)
        self.hidden_size = int(decoder.config.hidden_size)
        self.memo: dict[str, torch.Tensor] = {}
        # States on disk (`first_pl.prefix.store.StoredStates`), read when asked for: a stage
        # reads only the rows it uses.
        self.stored = None
        self.hits = 0
        self.misses = 0

    @property
    def offloaded(self) -> bool:
        """True while the decoder's weights are dropped (on the meta device)."""
        return any(t.is_meta for t in self._decoder.parameters())

    @property
    def decoder(self) -> nn.Module:
        """The prefix's decoder; after `offload`, rebuilt by `reload` when first needed again."""
        if self.offloaded:
            if self.reload is None:
                raise RuntimeError(
                    f"the frozen prefix of {self.source} was offloaded and has no way to reload it"
                )
            self._decoder = _frozen(self.reload())
        return self._decoder

    def offload(self) -> None:
        """Drop the decoder's weights (to the meta device) until a row needs computing again."""
        self._decoder.to("meta")

    @torch.no_grad()
    def compute(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The prefix's forward `[B, T, H]`, memo untouched: on the input's device (the prefix
        follows it there once), in the prefix's own dtype with autocast off, so a state is the
        same whichever stage or precision computed it first."""
        decoder = self.follow(input_ids.device)
        with torch.autocast(input_ids.device.type, enabled=False):
            out = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        return out.last_hidden_state

    def follow(self, device: torch.device) -> nn.Module:
        """The decoder, moved to `device` (once: it stays where its inputs are)."""
        decoder = self.decoder
        if next(decoder.parameters()).device != device:
            decoder.to(device)
        return decoder

    def recall(self, keys: list[str]) -> tuple[dict[str, torch.Tensor], list[int]]:
        """The states of `keys` that the memo or the store has (stored rows are read, not kept),
        and the indices of the keys neither has."""
        found: dict[str, torch.Tensor] = {}
        for key in keys:
            if key in self.memo:
                found[key] = self.memo[key]
            elif self.stored is not None and key in self.stored and key not in found:
                found[key] = self.stored[key]
        missing = [b for b, key in enumerate(keys) if key not in found]
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        return found, missing

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Hidden states after layer L `[B, T, H]` for a right-padded batch, from the memo where
        it has the row (zeros at padding, which no real position attends to)."""
        lengths = right_padded_lengths(attention_mask)
        if lengths is None:  # left or inner padding: not a memo key's layout; compute directly
            self.misses += input_ids.shape[0]
            return self.compute(input_ids, attention_mask).to(input_ids.device)
        rows = [int(n) for n in lengths.tolist()]
        keys = [sequence_key(input_ids[b, :n]) for b, n in enumerate(rows)]
        found, missing = self.recall(keys)
        if missing:
            index = torch.tensor(missing, device=input_ids.device)
            width = max(rows[b] for b in missing)
            hidden = self.compute(input_ids[index, :width], attention_mask[index, :width])
            for i, b in enumerate(missing):
                state = hidden[i, : rows[b]].to("cpu", torch.float32).clone()
                found[keys[b]] = self.memo[keys[b]] = state
        out = torch.zeros(
            input_ids.shape[0], input_ids.shape[1], self.hidden_size, dtype=torch.float32
        )
        for b, key in enumerate(keys):
            out[b, : rows[b]] = found[key]
        return out.to(input_ids.device)

    @torch.no_grad()
    def shared_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: SharedRows
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states after layer L of the contexts `[Q, Tq, H]` and continuations
        `[R, Tc, H]` of the right-padded full rows `input_ids` split as `rows` says (zeros at
        padding), in float32 on the input's device.

        Each full row is looked up in the memo; the rows it lacks are computed with each of
        their contexts once and every continuation against the prefix's own keys and values of
        its context, and remembered as full rows. Context and continuation states are then
        read back from the rows' memo entries (a row's first positions are its context's).
        """
        lengths = [int(n) for n in attention_mask.sum(dim=1).tolist()]
        keys = [sequence_key(input_ids[r, :n]) for r, n in enumerate(lengths)]
        starts = rows.positions[:, 0].tolist()
        found, missing = self.recall(keys)
        if missing:
            part = rows.subset(torch.tensor(missing, device=input_ids.device))
            decoder = self.follow(input_ids.device)
            with torch.autocast(input_ids.device.type, enabled=False):
                context, continuation = shared_forward(decoder, part.context_ids, part.continuation_ids, part)
            for i, r in enumerate(missing):
                whole = torch.cat([context[part.row_context[i], : starts[r]], continuation[i, : lengths[r] - starts[r]]])
                found[keys[r]] = self.memo[keys[r]] = whole.to("cpu", torch.float32).clone()
        contexts = torch.zeros(*rows.context_ids.shape, self.hidden_size)
        for q, r in enumerate(rows.context_row.tolist()):
            contexts[q, : starts[r]] = found[keys[r]][: starts[r]]
        continuations = torch.zeros(*rows.continuation_ids.shape, self.hidden_size)
        for r, key in enumerate(keys):
            continuations[r, : lengths[r] - starts[r]] = found[key][starts[r] :]
        return contexts.to(input_ids.device), continuations.to(input_ids.device)
