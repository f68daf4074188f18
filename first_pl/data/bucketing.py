"""Length-grouped training batches (`data.bucket_by_length: true`).

A batch is padded to its longest example, so a batch mixing short and long examples spends
compute on padding. `LengthGroupedSampler` shuffles the training set, cuts the shuffled order
into windows of `window_batches` batches, sorts each window by length and cuts it into batches;
then it shuffles the order of those batches. Examples of similar length share a batch, while
which examples meet in a window, and the order of batches, stay random (sorting the whole set
would give the model every short example first). Hugging Face's `group_by_length` does the
same with windows of 50 batches, the default here.

The order depends only on the seed and the epoch (`set_epoch`, which Lightning calls on a
dataloader's sampler every epoch), so a run, and a run resumed at an epoch boundary, sees the
same batches. The sampler yields indices: a DataLoader with the same `batch_size` (and
`drop_last` false) cuts them into exactly these batches, since every batch is full except the
epoch's last one, which is yielded last.

One process only: a distributed run replaces a dataloader's sampler by a `DistributedSampler`,
which would drop the grouping silently, so `QADataModule` refuses the combination.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class LengthGroupedSampler(Sampler[int]):
    """Indices in length-grouped batches of `batch_size` (see the module docstring).

    Args:
        lengths: the tokens of each example (its padded length in a batch of its own).
        batch_size: examples per batch; the DataLoader must use the same.
        window_batches: batches per sorted window (larger: less padding, less randomness).
        shuffle: shuffle the examples before grouping and the batches after; without it the
            windows follow the data's order and the batches the windows'.
        seed: the base seed; epoch e draws from `seed + e`.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        window_batches: int = 50,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        if batch_size < 1 or window_batches < 1:
            raise ValueError(
                f"data.batch_size and data.bucket_window must be >= 1, got {batch_size} and "
                f"{window_batches}"
            )
        self.lengths = list(lengths)
        self.batch_size, self.window_batches = batch_size, window_batches
        self.shuffle, self.seed = shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def batches(self) -> list[list[int]]:
        """This epoch's batches, in order (the last one may be short)."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        n = len(self.lengths)
        order = torch.randperm(n, generator=generator).tolist() if self.shuffle else list(range(n))
        window = self.batch_size * self.window_batches
        batches: list[list[int]] = []
        for start in range(0, n, window):
            # longest first; a stable sort keeps equal lengths in their shuffled order
            grouped = sorted(order[start : start + window], key=self.lengths.__getitem__, reverse=True)
            batches += [grouped[i : i + self.batch_size] for i in range(0, len(grouped), self.batch_size)]
        short = batches.pop() if batches and len(batches[-1]) < self.batch_size else None
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return batches + ([short] if short else [])

    def __iter__(self) -> Iterator[int]:
        return (index for batch in self.batches() for index in batch)


def padding_share(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """The share of a batch's positions that are padding, over `batches` (pad to longest)."""
    padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)
    return 1 - sum(lengths[i] for batch in batches for i in batch) / padded if padded else 0.0
