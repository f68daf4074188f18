"""Validation of one appended batch, before any byte of it is written (so a bad batch leaves
the partial store as it was)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from first_pl.data.store.format import StoreMetadata


def encode_example_ids(example_ids: Sequence[str], id_length: int | None, path: Path) -> np.ndarray:
    """The ids as UTF-8 ``S{longest}``; raises if one cannot be stored (longer than
    ``id_length``, or with a NUL, which fixed-length bytes drop)."""
    encoded = []
    for example_id in example_ids:
        if not isinstance(example_id, str):
            raise TypeError(f"example ids must be str, got {type(example_id).__name__}")
        data = example_id.encode("utf-8")
        if b"\0" in data:
            raise ValueError(f"example id {example_id!r} contains a NUL character")
        if id_length is not None and len(data) > id_length:
            raise ValueError(
                f"example id {example_id!r} is {len(data)} bytes in UTF-8, longer than "
                f"id_length={id_length} of {path}; pass the longest id's length "
                "(first_pl.data.store.example_id_length) to the writer"
            )
        encoded.append(data)
    return np.array(encoded, dtype=np.bytes_)


def checked_batch(
    meta: StoreMetadata,
    seen: set[str],
    example_ids: Sequence[str],
    ids: np.ndarray,
    probs: np.ndarray,
    gold: np.ndarray,
    counts: Sequence[int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The batch cast to the store's dtypes, or a ValueError naming what does not fit."""
    if len(example_ids) != len(counts):
        raise ValueError(f"{len(example_ids)} example ids but {len(counts)} counts")
    if len(set(example_ids)) != len(example_ids) or seen.intersection(example_ids):
        raise ValueError("duplicate example id: each example may be written once")
    rows = int(sum(counts))
    ids, probs, gold = np.asarray(ids), np.asarray(probs), np.asarray(gold)
    if ids.shape != (rows, meta.k) or probs.shape != (rows, meta.k) or gold.shape != (rows,):
        raise ValueError(
            f"expected ids/probs [{rows}, {meta.k}] and gold [{rows}], got "
            f"{ids.shape}, {probs.shape}, {gold.shape}"
        )
    for name, values in (("ids", ids), ("gold", gold)):
        if values.size and (values.min() < 0 or values.max() >= meta.vocab_size):
            raise ValueError(
                f"{name} outside [0, {meta.vocab_size}) for vocab_size {meta.vocab_size}"
            )
    return ids.astype(meta.ids_dtype), probs.astype(meta.probs_dtype), gold.astype(meta.ids_dtype)
