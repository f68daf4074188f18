"""Each evaluation example counted once on any number of processes.

Lightning evaluates validation and test sets through a `DistributedSampler` on several
processes, which pads an uneven set by repeating its first examples so that every rank runs
the same number of batches (FSDP needs that: each forward is collective). Counted as they come,
those repeats would enter accuracy, ECE and the prediction tables twice. With `shuffle=False`
the sampler gives rank r the padded list's positions r, r + W, r + 2W, ...; positions at or
beyond the set's size are the repeats, so each rank can mark its own without communication.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import DistributedSampler


def eval_dataloader(trainer: Any, split: str, dataloader_idx: int) -> Any:
    """The `split` ("val" or "test") dataloader number `dataloader_idx` the trainer iterates."""
    loaders = trainer.val_dataloaders if split == "val" else trainer.test_dataloaders
    if isinstance(loaders, Mapping):
        loaders = list(loaders.values())
    if not isinstance(loaders, (list, tuple)):
        loaders = [loaders]
    return loaders[dataloader_idx] if dataloader_idx < len(loaders) else None


class SamplerPadding:
    """Marks the padded repeats in each dataloader's stream of examples on this rank."""

    def __init__(self) -> None:
        self._seen: dict[int, int] = {}

    def reset(self) -> None:
        """A new evaluation epoch: every rank's stream starts again at its first example."""
        self._seen = {}

    def keep(self, dataloader: Any, dataloader_idx: int, n: int) -> torch.Tensor | None:
        """A `[n]` mask, false at the repeats among this rank's next `n` examples; `None` when
        the dataloader pads nothing (one process, an even split or `drop_last`)."""
        sampler = getattr(dataloader, "sampler", None)
        if not isinstance(sampler, DistributedSampler) or sampler.drop_last:
            return None
        size = len(sampler.dataset)
        if sampler.total_size <= size:
            return None
        if getattr(sampler, "shuffle", False):
            raise ValueError(
                "CalibrationEvaluation: a shuffling DistributedSampler pads an uneven evaluation "
                "set with repeats it cannot mark; evaluate without shuffling"
            )
        start = self._seen.get(dataloader_idx, 0)
        self._seen[dataloader_idx] = start + n
        positions = sampler.rank + sampler.num_replicas * torch.arange(start, start + n)
        return positions < size


def select(outputs: Mapping[str, Any], keep: torch.Tensor) -> dict[str, Any]:
    """`outputs` with only the kept examples: per-example tensors and lists are indexed, other
    values (the task's scoring) pass through."""
    n = keep.shape[0]
    chosen: dict[str, Any] = {}
    for key, value in outputs.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == n:
            chosen[key] = value[keep.to(value.device)]
        elif isinstance(value, (list, tuple)) and len(value) == n:
            chosen[key] = [v for v, k in zip(value, keep.tolist(), strict=True) if k]
        else:
            chosen[key] = value
    return chosen
