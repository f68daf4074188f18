"""A store out to a Hugging Face `datasets` parquet, and the store metadata that parquet carries
in its schema (docs/STORE_FORMAT.md, "Export"), so `first-pl import-store --format parquet` can
check it against the data it will serve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from first_pl.data.store.format import StoreMetadata, TeacherStoreError
from first_pl.data.store.reader import TeacherStore
from first_pl.fileio.atomic import atomic_write

PARQUET_METADATA_KEY = b"first_pl_store"


def parquet_metadata(source: Path) -> dict[str, Any]:
    """The store metadata a first_pl parquet export carries in its schema."""
    import pyarrow.parquet as pq

    raw = (pq.read_schema(source).metadata or {}).get(PARQUET_METADATA_KEY)
    if raw is None:
        raise TeacherStoreError(
            f"{source} is not a first_pl store export (no {PARQUET_METADATA_KEY.decode()} metadata)"
        )
    return json.loads(raw)


def export_parquet(
    store_path: str | Path, out_path: str | Path, batch_examples: int = 1024
) -> Path:
    """One row per example: example_id, teacher_ids [n][k], teacher_probs [n][k], gold [n];
    the store's metadata in the schema (key ``first_pl_store``). Loads with
    ``datasets.Dataset.from_parquet``. Written under a temporary name and renamed: a failed
    export leaves no half file, and an earlier file at ``out_path`` stays until the new one is
    whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = TeacherStore(store_path)
    meta = {**store.metadata.__dict__, "source_format_version": store.attrs.get("format_version")}
    schema = pa.schema(
        [
            ("example_id", pa.string()),
            ("teacher_ids", pa.list_(pa.list_(pa.int32()))),
            ("teacher_probs", pa.list_(pa.list_(pa.float32()))),
            ("gold", pa.list_(pa.int32())),
        ],
        metadata={PARQUET_METADATA_KEY: json.dumps(meta).encode()},
    )
    out = Path(out_path)

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, schema) as writer:
            for start in range(0, len(store), batch_examples):
                batch = range(start, min(start + batch_examples, len(store)))
                columns: dict[str, list] = {name: [] for name in schema.names}
                for i in batch:
                    ids, probs, gold = store.positions(i)
                    columns["example_id"].append(store.example_ids[i])
                    columns["teacher_ids"].append(ids.astype(np.int32).tolist())
                    columns["teacher_probs"].append(probs.astype(np.float32).tolist())
                    columns["gold"].append(gold.astype(np.int32).tolist())
                writer.write_table(pa.table(columns, schema=schema))

    try:
        store.verify_checksums()  # what is published is the store its sha256 names
        atomic_write(out, write)
    finally:
        store.close()
    return out


def check_parquet_metadata(source: Path, expected: StoreMetadata) -> None:
    """A first_pl parquet must come from the same tokenizer, template, task, split and
    max_length (when it records one: exports of older stores do not)."""
    found = parquet_metadata(source)
    fields = ["tokenizer_fingerprint", "template_fingerprint", "task", "split", "vocab_size"]
    if found.get("max_length") is not None:
        fields.append("max_length")
    for field in fields:
        if found.get(field) != getattr(expected, field):
            raise TeacherStoreError(
                f"{source}: {field} is {found.get(field)!r} but the data config gives "
                f"{getattr(expected, field)!r}; export it from a store of this data"
            )
    if found.get("k", 0) < expected.k:
        raise TeacherStoreError(f"{source} holds k={found.get('k')}, fewer than k={expected.k}")
