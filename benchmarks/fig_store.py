"""Bytes on disk per stored response token, against the naive and JSON-lines alternatives.

The headline row is the whole file of a realistic store: the default store format (3: uint16
ids and float16 probabilities gzip-compressed, gold packed as ranks) of *real* teacher top-k
over the offline default's train split (`Workbench.realistic_store`: the real teacher, k = 5,
vocabulary 49,152, `Settings.store_examples` examples = 640 as in the main job), since a
compressed file's size depends on the values. The synthetic store of
the generated split's shape (uniformly random ids, which no language model produces and gzip
cannot shrink) bounds the worst case: its whole file and its marginal cost (file growth from 4
to 16 copies of the split under new ids, fixed overheads amortised). The payload row is the
bytes of one uncompressed ids + probs row in the file's dtypes. The JSON-lines dump uses real
teacher rows, since its size depends on the digits printed.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from benchmarks.common import Goal, Row
from benchmarks.workbench import Workbench, repeated
from first_pl.data.store import TeacherStore


def _json_lines_bytes(store: TeacherStore) -> int:
    """Size of one JSON line per example: {"example_id": ..., "topk": [{id: prob, ...}, ...]}."""
    total = 0
    for i, example_id in enumerate(store.example_ids):
        ids, probs, _ = store.positions(i)
        topk = [
            {str(int(t)): float(p) for t, p in zip(row_ids, row_probs, strict=True)}
            for row_ids, row_probs in zip(ids, probs.astype("float32"), strict=True)
        ]
        total += len(json.dumps({"example_id": example_id, "topk": topk}).encode()) + 1
    return total


def _positions(path: Path) -> int:
    store = TeacherStore(path)
    try:
        return store.num_positions
    finally:
        store.close()


def breakdown(path: Path) -> tuple[float, str]:
    """Whole-file bytes per position, and the bytes per position of each part of the file."""
    store = TeacherStore(path)
    positions = store.num_positions
    store.close()
    with h5py.File(path, "r") as f:
        parts = {
            "ids": f["ids"].id.get_storage_size(),
            "probs": f["probs"].id.get_storage_size(),
            "gold": sum(f[n].id.get_storage_size() for n in ("gold_rank", "gold_missing")),
            "example ids+offsets": sum(
                f[n].id.get_storage_size() for n in ("example_ids", "offsets")
            ),
        }
    size = path.stat().st_size
    parts["HDF5 metadata+attributes"] = size - sum(parts.values())
    text = ", ".join(f"{name} {value / positions:.2f}" for name, value in parts.items())
    return size / positions, f"{positions} positions: {text}"


def store_rows(bench: Workbench) -> list[Row]:
    realistic = bench.realistic_store
    store = TeacherStore(realistic)
    examples, k, vocab = len(store), store.metadata.k, store.metadata.vocab_size
    ids_dtype, probs_dtype = store.metadata.ids_dtype, np.dtype(store.metadata.probs_dtype)
    json_per_token = _json_lines_bytes(store) / store.num_positions
    store.close()
    per_token, detail = breakdown(realistic)
    synthetic, synthetic_detail = breakdown(bench.train_store)
    small, large = (bench.synthetic_store(repeated(bench.examples, n)) for n in (4, 16))
    added = _positions(large) - _positions(small)
    marginal = (large.stat().st_size - small.stat().st_size) / added
    payload = k * (ids_dtype.itemsize + probs_dtype.itemsize)
    rows = [
        Row(
            f"bytes per stored response token, whole file, real teacher top-k (k={k}, vocab {vocab})",
            per_token,
            unit="B",
            goal=Goal("<=", 20),
            detail=f"{examples} examples of the generated train split, default format 3 (gzip); {detail}",
        ),
        Row(
            "bytes per token, whole file, synthetic uniformly random ids (worst case)",
            synthetic,
            unit="B",
            detail=synthetic_detail,
        ),
        Row(
            "bytes per additional token (marginal, synthetic random ids, large store)",
            marginal,
            unit="B",
            goal=Goal("<=", 20),
            detail=f"file size growth from {_positions(small)} to {_positions(large)} positions",
        ),
        Row(
            "bytes per token, top-k payload uncompressed (ids + probs rows)",
            payload,
            unit="B",
            detail=f"{ids_dtype} ids + {probs_dtype} probs; naive int32+float32 = {8 * k}",
        ),
        Row(
            "bytes per token, JSON lines of {id: prob} dicts",
            json_per_token,
            unit="B",
            detail=f"the same {examples} examples' real teacher rows",
        ),
    ]
    return rows
