"""Extract the teacher's top-k next-token distribution at every response position into a store.

The teacher runs once over the data; only response positions (``labels != -100``) are kept, and
the LM head is applied to those rows alone, so a batch costs ``[P, V]`` logits, not ``[B, L, V]``.
Nothing is accumulated across batches: each batch goes to the writer and is dropped, so memory
stays flat however large the data. A killed run resumes from the writer's ``num_done``.

Several processes split the data into contiguous rank blocks, write one shard each, and rank 0
merges them in rank order, which is the single-process order.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from first_pl.data.batch import response_mask
from first_pl.data.store import (
    StoreMetadata,
    TeacherStoreWriter,
    example_id_length,
    merge_shards,
)
from first_pl.lm_head import check_plain_lm_head, head_logits, hidden_at
from first_pl.models import tokenizer_fingerprint  # noqa: F401 - scripts import it from here too

Batch = Mapping[str, Any]  # a first_pl.data.batch.TrainBatch


def response_hidden(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Final hidden states at response positions ``[P, H]``, their gold tokens ``[P]``, and the
    number of response positions per example (to split the flat rows back into examples)."""
    device = next(model.parameters()).device
    labels = batch["labels"].to(device)
    mask = response_mask(labels)
    input_ids, attention_mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    hidden = hidden_at(model, input_ids, attention_mask, mask)
    return hidden, labels[mask], mask.sum(dim=1).tolist()


def topk_at_responses(
    model: nn.Module, batch: Batch, k: int, chunk_rows: int = 2048
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """``(ids [P, k], probs [P, k], gold [P], counts)`` on CPU, probs under the full softmax.

    The head (`first_pl.lm_head`: it refuses soft-capped or scaled logits), the float32 softmax
    and the top-k run on ``chunk_rows`` rows at a time so a batch with many response tokens and
    a large vocabulary never materialises more than ``[chunk_rows, V]``.
    """
    hidden, gold, counts = response_hidden(model, batch)
    ids, probs = [], []
    for rows in hidden.split(chunk_rows):
        p, i = torch.softmax(head_logits(model, rows).float(), dim=-1).topk(k, dim=-1)
        ids.append(i.cpu())
        probs.append(p.cpu())
    if not ids:
        return torch.zeros(0, k, dtype=torch.long), torch.zeros(0, k), gold.cpu(), counts
    return torch.cat(ids), torch.cat(probs), gold.cpu(), counts


@dataclass
class ExtractStats:
    """What one call wrote (skipped examples of a resumed run are not counted)."""

    examples: int
    positions: int
    seconds: float


def _num_examples(dataloader: Iterable[Batch]) -> int | None:
    """Examples a dataloader will yield, if it can tell (for the progress bar's total)."""
    try:
        return len(dataloader.dataset)  # type: ignore[attr-defined, arg-type]
    except (AttributeError, TypeError):
        return None


def _check_resume_order(batch_ids: Sequence[str], done_ids: Sequence[str], start: int) -> None:
    expected = list(done_ids[start : start + len(batch_ids)])
    if list(batch_ids[: len(expected)]) != expected:
        raise ValueError(
            "the dataloader yields examples in another order than the partial store was written "
            f"in (store has {expected[:3]}..., data has {list(batch_ids[:3])}...); resume needs "
            "a deterministic, unshuffled dataloader over the same data"
        )


def extract_topk(
    model: nn.Module,
    dataloader: Iterable[Batch],
    writer: TeacherStoreWriter,
    k: int | None = None,
    *,
    chunk_rows: int = 2048,
    progress: bool = True,
) -> ExtractStats:
    """Write the teacher's top-k at the response positions of every example to ``writer``.

    Examples the writer already holds (``writer.num_done``, from a killed run) are skipped
    without running the model; their ids are checked against the store so a reordered
    dataloader fails loudly instead of writing a store whose rows belong to other examples.
    """
    check_plain_lm_head(model)  # before any batch runs
    meta = writer.metadata
    if k is not None and k != meta.k:
        raise ValueError(f"k={k} but the store is for k={meta.k}")
    done_ids, seen = writer.example_ids_done, 0
    stats = ExtractStats(0, 0, 0.0)
    bar = tqdm(
        total=_num_examples(dataloader),
        initial=len(done_ids),
        unit="ex",
        disable=not progress,
        desc="extract",
        # written to a file (no terminal), a bar redrawn ten times a second floods the log
        mininterval=0.1 if sys.stderr.isatty() else 30.0,
    )
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            for batch in dataloader:
                names = list(batch["example_id"])
                skip = min(max(len(done_ids) - seen, 0), len(names))
                _check_resume_order(names, done_ids, seen)
                seen += len(names)
                if skip == len(names):
                    continue
                positions = _extract_batch(model, batch, writer, skip, chunk_rows)
                stats.examples += len(names) - skip
                stats.positions += positions
                elapsed = time.perf_counter() - start
                bar.update(len(names) - skip)
                bar.set_postfix(tok_s=f"{stats.positions / max(elapsed, 1e-9):.0f}")
    finally:
        bar.close()
        model.train(was_training)
    stats.seconds = time.perf_counter() - start
    return stats


def _extract_batch(
    model: nn.Module, batch: Batch, writer: TeacherStoreWriter, skip: int, chunk_rows: int
) -> int:
    """Run one batch and write all but its first ``skip`` examples (already in the store)."""
    meta = writer.metadata
    ids, probs, gold, counts = topk_at_responses(model, batch, meta.k, chunk_rows)
    vocab = model.get_output_embeddings().weight.shape[0]
    if vocab != meta.vocab_size:
        raise ValueError(
            f"the model's vocab is {vocab} but the store is for vocab_size {meta.vocab_size}"
        )
    first_row = sum(counts[:skip])
    writer.append(
        list(batch["example_id"])[skip:],
        ids[first_row:].numpy(),
        probs[first_row:].numpy(),
        gold[first_row:].numpy(),
        counts=counts[skip:],
    )
    return len(gold) - first_row


def rank_range(num_examples: int, rank: int, world_size: int) -> range:
    """Contiguous block of example indices for ``rank``: concatenated in rank order they give
    back the full order, so the merged store equals a single-process one."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside [0, {world_size})")
    per_rank, extra = divmod(num_examples, world_size)
    start = rank * per_rank + min(rank, extra)
    return range(start, start + per_rank + (rank < extra))


def shard_path(out_path: str | os.PathLike, rank: int, world_size: int) -> Path:
    """Where rank ``rank`` writes its own complete store before the merge."""
    return Path(f"{os.fspath(out_path)}.rank{rank}-of-{world_size}")


def dataset_id_length(dataset: Dataset) -> int | None:
    """UTF-8 length of the longest ``example_id`` of a map-style dataset's items (objects or
    dicts), for the writer's ``id_length``; None when the items carry no ``example_id``."""
    try:
        items = (dataset[i] for i in range(len(dataset)))  # type: ignore[arg-type]
        return example_id_length(
            item["example_id"] if isinstance(item, Mapping) else item.example_id for item in items
        )
    except (TypeError, KeyError, AttributeError):
        return None


def extract_shard(
    model: nn.Module,
    dataset: Dataset,
    collate_fn: Callable[[list[Any]], Batch],
    out_path: str | os.PathLike,
    metadata: StoreMetadata,
    *,
    rank: int = 0,
    world_size: int = 1,
    batch_size: int = 8,
    progress: bool = True,
    overwrite: bool = False,
    id_length: int | None = None,
    compression: str | None = None,
) -> Path:
    """Extract this rank's block of ``dataset`` into its shard (the final store if alone).

    ``id_length`` (UTF-8 bytes of the longest example id, the width of the store's
    ``example_ids``) defaults to the longest ``example_id`` of the whole dataset, so every
    rank's shard has the same width.

    With ``overwrite`` a complete store already at the path is replaced only when the new one is
    finalized (an atomic rename), so a failed or killed run never loses it. ``compression`` is
    the writer's (``"gzip"``, the default, or ``"none"``).

    Batches are formed within the block, so ranks see the same batches as one process when
    each block is a whole number of batches; then the merged store is equal bit for bit.
    """
    indices = rank_range(len(dataset), rank, world_size)  # type: ignore[arg-type]
    loader = DataLoader(
        Subset(dataset, indices), batch_size=batch_size, shuffle=False, collate_fn=collate_fn
    )
    path = Path(out_path) if world_size == 1 else shard_path(out_path, rank, world_size)
    if id_length is None:
        id_length = dataset_id_length(dataset)
    writer = TeacherStoreWriter(
        path, metadata, compression=compression, overwrite=overwrite, id_length=id_length
    )
    with writer:
        extract_topk(model, loader, writer, progress=progress and rank == 0)
    return path


def merge_rank_shards(
    out_path: str | os.PathLike,
    world_size: int,
    *,
    keep_shards: bool = False,
    overwrite: bool = False,
    compression: str | None = None,
) -> Path:
    """Merge the ``world_size`` rank shards of ``out_path`` in rank order (run on rank 0)."""
    shards = [shard_path(out_path, rank, world_size) for rank in range(world_size)]
    merged = merge_shards(shards, out_path, overwrite=overwrite, compression=compression)
    if not keep_shards:
        for shard in shards:
            shard.unlink()
    return merged


def extract_distributed(
    model: nn.Module,
    dataset: Dataset,
    collate_fn: Callable[[list[Any]], Batch],
    out_path: str | os.PathLike,
    metadata: StoreMetadata,
    *,
    batch_size: int = 8,
    progress: bool = True,
    overwrite: bool = False,
    id_length: int | None = None,
    compression: str | None = None,
) -> Path:
    """Every rank of an initialised ``torch.distributed`` group calls this; rank 0 merges.

    Without a process group it is a single-process extraction.
    """
    dist = torch.distributed
    grouped = dist.is_available() and dist.is_initialized()
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if grouped else (0, 1)
    extract_shard(
        model,
        dataset,
        collate_fn,
        out_path,
        metadata,
        rank=rank,
        world_size=world_size,
        batch_size=batch_size,
        progress=progress,
        overwrite=overwrite and world_size == 1,  # shards are new files; the merge overwrites
        id_length=id_length,
        compression="none" if world_size > 1 else compression,  # shards: compressed once, merged
    )
    if world_size > 1:
        dist.barrier()
        if rank == 0:
            merge_rank_shards(out_path, world_size, overwrite=overwrite, compression=compression)
        dist.barrier()
    return Path(out_path)
