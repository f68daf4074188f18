"""Bytes on disk per stored response token, against the naive and JSON-lines alternatives.

The default store (uint16 ids, float16 probabilities, uncompressed) is measured whole at the
real shape of the generated train split (`Workbench.train_store`: real positions per example,
so the per-example overhead of ids and offsets is what users pay). Its values are synthetic,
which does not change an uncompressed file's size. The marginal cost (file growth from 4 to 16
copies of the split under new ids) is what each further token costs once fixed overheads are
amortised; the payload row is the bytes of one ids + probs row in the file's dtypes (their
measured storage growth, which comes in whole 4,096-row chunks, is in its detail). The
JSON-lines dump uses real teacher rows (`Workbench.real_store`), since its size depends on the
digits printed.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py

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
    store = TeacherStore(path, verify=False)
    try:
        return store.num_positions
    finally:
        store.close()


def _payload_bytes(path: Path) -> int:
    """Allocated storage of the ids and probs datasets (whole chunks)."""
    with h5py.File(path, "r") as f:
        return sum(f[name].id.get_storage_size() for name in ("ids", "probs"))


def store_rows(bench: Workbench) -> list[Row]:
    path = bench.train_store
    store = TeacherStore(path, verify=False)
    positions, examples, k = store.num_positions, len(store), store.metadata.k
    with h5py.File(path, "r") as f:
        sizes = {name: f[name].id.get_storage_size() for name in ("ids", "probs", "gold")}
        ids_dtype, probs_dtype = f["ids"].dtype, f["probs"].dtype
    per_token = path.stat().st_size / positions
    breakdown = ", ".join(f"{name} {size / positions:.1f}" for name, size in sizes.items())
    small, large = (bench.synthetic_store(repeated(bench.examples, n)) for n in (4, 16))
    added = _positions(large) - _positions(small)
    marginal = (large.stat().st_size - small.stat().st_size) / added
    allocated = (_payload_bytes(large) - _payload_bytes(small)) / added
    payload = k * (ids_dtype.itemsize + probs_dtype.itemsize)
    real = TeacherStore(bench.real_store, verify=False)
    json_per_token = _json_lines_bytes(real) / real.num_positions
    rows = [
        Row(
            f"bytes per stored response token, whole file (k={k}, vocab {store.metadata.vocab_size})",
            per_token,
            unit="B",
            goal=Goal("<=", 20),
            detail=(
                f"{positions} positions / {examples} examples; {breakdown}, "
                f"per-example ids+offsets+HDF5 {per_token - sum(sizes.values()) / positions:.1f}"
            ),
        ),
        Row(
            "bytes per additional token (marginal, large store)",
            marginal,
            unit="B",
            goal=Goal("<=", 20),
            detail=f"file size growth from {_positions(small)} to {_positions(large)} positions",
        ),
        Row(
            "bytes per token, top-k payload only (ids + probs rows)",
            payload,
            unit="B",
            goal=Goal("<=", 20),
            detail=(
                f"{ids_dtype} ids + {probs_dtype} probs; naive int32+float32 = {8 * k}; "
                f"allocated in whole chunks: {allocated:.1f} measured growth"
            ),
        ),
        Row(
            "bytes per token, JSON lines of {id: prob} dicts",
            json_per_token,
            unit="B",
            detail=f"{real.num_positions} real teacher positions",
        ),
    ]
    store.close()
    real.close()
    return rows
