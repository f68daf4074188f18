"""Whole-store operations: merge rank shards into one store; keep only the top k' of a store."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from first_pl.data.store.format import PROVENANCE_ATTRS, TeacherStoreError, example_id_length
from first_pl.data.store.reader import TeacherStore
from first_pl.data.store.writer import TeacherStoreWriter


def merge_shards(
    shard_paths: Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    example_order: Sequence[str] | None = None,
    *,
    overwrite: bool = False,
    compression: str | None = None,
    batch_examples: int = 1024,
) -> Path:
    """Concatenate complete rank shards (disjoint examples, equal metadata) into one store.

    ``example_order`` defaults to the shards' order one after another; with contiguous rank
    splits that is the single-process order, so N processes give the same data as one. The output
    is always in the current format, so merging one store of an older format upgrades it.
    """
    shards = [TeacherStore(p) for p in shard_paths]
    if not shards:
        raise ValueError("merge_shards needs at least one shard")
    metadata = shards[0].metadata
    for shard in shards[1:]:
        if shard.metadata != metadata:
            raise TeacherStoreError(
                f"{shard.path} was made with other metadata than {shards[0].path}"
            )
    where = {}
    for s, shard in enumerate(shards):
        for i, example_id in enumerate(shard.example_ids):
            if example_id in where:
                raise TeacherStoreError(f"example {example_id!r} is in more than one shard")
            where[example_id] = (s, i)
    order = list(example_order) if example_order is not None else list(where)
    missing = [e for e in order if e not in where]
    if missing or len(order) != len(where):
        raise TeacherStoreError(
            f"example_order does not cover the shards exactly (missing: {missing[:3]}, "
            f"{len(order)} ids for {len(where)} examples)"
        )
    writer = TeacherStoreWriter(
        out_path,
        metadata,
        compression=compression,
        overwrite=overwrite,
        id_length=example_id_length(order),
    )
    with writer as w:
        if w.example_ids_done != order[: w.num_done]:
            raise TeacherStoreError(f"the partial merge at {w.partial} was made in another order")
        for start in range(w.num_done, len(order), batch_examples):
            batch = order[start : start + batch_examples]
            ids, probs, gold = zip(
                *(shards[where[e][0]].positions(where[e][1]) for e in batch), strict=True
            )
            w.append(batch, ids, probs, gold)
    for shard in shards:
        shard.close()
    return Path(out_path)


def truncate_store(
    source: str | os.PathLike,
    out_path: str | os.PathLike,
    k: int,
    *,
    overwrite: bool = False,
    compression: str | None = None,
    batch_examples: int = 1024,
) -> Path:
    """A store holding the first ``k`` columns of ``source``'s top-k (same examples, same gold).

    The top-k' of a top-k extraction is its first k' columns (the store keeps them in
    descending order), so one extraction at the largest k gives every smaller k without running
    the teacher again: the k sweep and its bytes-per-k figure use this. An imported store's
    source (``import_source``) is kept.
    """
    store = TeacherStore(source)
    if not 1 <= k <= store.metadata.k:
        raise ValueError(f"k must be in [1, {store.metadata.k}] (the k of {store.path}), got {k}")
    metadata = dataclasses.replace(store.metadata, k=k)
    writer = TeacherStoreWriter(
        out_path,
        metadata,
        compression=compression or store.attrs.get("compression"),
        overwrite=overwrite,
        id_length=example_id_length(store.example_ids),
        provenance={key: store.attrs[key] for key in PROVENANCE_ATTRS if key in store.attrs},
    )
    with writer as w:
        if w.example_ids_done != store.example_ids[: w.num_done]:
            raise TeacherStoreError(f"the partial store at {w.partial} holds other examples")
        for start in range(w.num_done, len(store), batch_examples):
            batch = range(start, min(start + batch_examples, len(store)))
            ids, probs, gold = zip(*(store.positions(i) for i in batch), strict=True)
            w.append(
                [store.example_ids[i] for i in batch],
                [a[:, :k] for a in ids],
                [p[:, :k] for p in probs],
                gold,
            )
    store.close()
    return Path(out_path)
