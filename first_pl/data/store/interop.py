"""Stores that travel: teacher top-k from other tools into the HDF5 store, and a store out to a
Hugging Face `datasets` parquet (docs/STORE_FORMAT.md, "Import" and "Export"; the export and its
schema metadata are `first_pl.data.store.parquet`).

Every source is aligned with the tokenised data the store will serve: a record is joined to its
example by ``example_id``, its positions to the example's response positions, and it must
cover every one of them. vLLM's ``prompt_logprobs`` holds the actual prompt token at every
position, which is checked against the data's labels, so a source tokenised another way fails
by name instead of training on shifted rows. Sources index per *input* token (entry ``j`` is the
distribution of ``input_ids[j]`` given the tokens before it); the store indexes per label
position ``t`` (predicting ``input_ids[t + 1]``), so row ``t`` is entry ``t + 1``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from first_pl.data.batch import IGNORE_INDEX
from first_pl.data.store.format import StoreMetadata, TeacherStoreError, example_id_length
from first_pl.data.store.parquet import check_parquet_metadata
from first_pl.data.store.writer import TeacherStoreWriter
from first_pl.data.tokenize import Encoded

FORMATS = ("vllm", "axolotl", "parquet", "distillkit")


def response_positions(labels: list[int]) -> list[int]:
    return [t for t, label in enumerate(labels) if label != IGNORE_INDEX]


def _entry(entries: list[Any], t: int, offset: int, example_id: str, source: str) -> Any:
    j = t + 1 - offset
    if not 0 <= j < len(entries) or entries[j] is None:
        raise TeacherStoreError(
            f"{source}: example {example_id!r} has no teacher distribution for response position "
            f"{t} (entry {j} of {len(entries)}); it was made from another tokenisation or length"
        )
    return entries[j]


def _top(pairs: list[tuple[int, float]], k: int, where: str) -> list[tuple[int, float]]:
    if len(pairs) < k:
        raise TeacherStoreError(
            f"{where} holds {len(pairs)} top tokens, fewer than k={k}; import with a smaller --k"
        )
    return pairs[:k]


def vllm_rows(
    record: Mapping[str, Any], input_ids: list[int], labels: list[int], k: int, source: str
):
    """``(ids, logprobs)`` from a vLLM ``prompt_logprobs`` list: per position a mapping
    ``token_id -> {"logprob", "rank", "decoded_token"}`` (JSON keys are strings), None first.

    vLLM adds the actual prompt token to each mapping (rank > k when outside the top-k): it must
    be the data's label there. Entries are ordered by rank, ranks above k dropped.
    """
    example_id, entries = record["example_id"], record["prompt_logprobs"]
    given = record.get("prompt_token_ids")
    if given is not None and list(given) != list(input_ids):
        raise TeacherStoreError(
            f"{source}: prompt_token_ids of example {example_id!r} differ from the data's tokenisation"
        )
    ids, logprobs = [], []
    for t in response_positions(labels):
        entry = _entry(entries, t, 0, example_id, source)
        if str(labels[t]) not in {str(token) for token in entry}:
            raise TeacherStoreError(
                f"{source}: example {example_id!r} position {t + 1} scores other tokens than the data's "
                f"token {labels[t]} (vLLM always includes the actual prompt token): another tokenisation"
            )
        ranked = sorted(
            (int(v["rank"]), int(token), float(v["logprob"]))
            for token, v in entry.items()
            if v.get("rank") is not None and int(v["rank"]) <= k
        )
        top = _top(
            [(token, lp) for _, token, lp in ranked],
            k,
            f"{source}: example {example_id!r} position {t + 1}",
        )
        ids.append([token for token, _ in top])
        logprobs.append([lp for _, lp in top])
    return ids, logprobs


def axolotl_rows(
    record: Mapping[str, Any],
    input_ids: list[int],
    labels: list[int],
    k: int,
    source: str,
    field: str,
):
    """``(ids, logprobs)`` from axolotl's KD log-prob field, aligned to the end of ``input_ids``
    (axolotl left-pads a shorter list). v1 rows are lists of ``{"token": "token_id:<id>",
    "logprob": x}``; v2 rows are lists of log-probabilities with the ids in ``target_token_ids``.
    """
    example_id = record["example_id"]
    if field not in record:
        raise TeacherStoreError(
            f"{source}: example {example_id!r} has no field {field!r} (set --logprobs_field)"
        )
    entries, offset = record[field], len(input_ids) - len(record[field])
    if offset < 0:
        raise TeacherStoreError(
            f"{source}: example {example_id!r} has {len(entries)} log-prob rows for {len(input_ids)} tokens"
        )
    token_rows = record.get("target_token_ids")
    ids, logprobs = [], []
    for t in response_positions(labels):
        entry = _entry(entries, t, offset, example_id, source)
        try:
            if token_rows is not None:
                pairs = [
                    (int(i), float(lp))
                    for i, lp in zip(token_rows[t + 1 - offset], entry, strict=True)
                ]
            else:
                pairs = [(int(str(e["token"]).split(":")[1]), float(e["logprob"])) for e in entry]
        except (ValueError, TypeError, KeyError, IndexError) as err:
            layout = (
                f"'target_token_ids' and {field!r} rows of equal length"
                if token_rows is not None
                else f"{field!r} entries {{'token': 'token_id:<id>', 'logprob': <number>}}"
            )
            raise TeacherStoreError(
                f"{source}: example {example_id!r} position {t + 1} is malformed ({type(err).__name__}: {err}); "
                f"expected {layout}"
            ) from None
        top = _top(
            sorted(pairs, key=lambda p: -p[1]),
            k,
            f"{source}: example {example_id!r} position {t + 1}",
        )
        ids.append([token for token, _ in top])
        logprobs.append([lp for _, lp in top])
    return ids, logprobs


def load_records(source: Path, fmt: str) -> dict[str, Mapping[str, Any]]:
    """Records keyed by ``example_id`` from JSON (a list), JSON lines, or parquet."""
    if not source.is_file():
        raise TeacherStoreError(f"import source {source} does not exist")
    if source.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(source).to_pylist()
    elif source.suffix == ".jsonl":
        rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    else:
        rows = json.loads(source.read_text())
    if not isinstance(rows, list) or any(
        not isinstance(r, dict) or "example_id" not in r for r in rows
    ):
        raise TeacherStoreError(
            f"{source}: expected records with an 'example_id' field ({fmt} format)"
        )
    records = {str(r["example_id"]): r for r in rows}
    if len(records) != len(rows):
        raise TeacherStoreError(f"{source}: {len(rows) - len(records)} duplicate example_id(s)")
    return records


def _matrix(rows: list, k: int, dtype: type) -> np.ndarray:
    return (
        np.asarray(rows, dtype).reshape(len(rows), -1)[:, :k] if rows else np.zeros((0, k), dtype)
    )


def imported_rows(
    fmt: str,
    record: Mapping[str, Any],
    example: Encoded,
    k: int,
    source: str,
    field: str,
) -> tuple[np.ndarray, np.ndarray]:
    """``(ids [n, k], probs [n, k])`` of one example from a record of ``fmt``."""
    n = len(response_positions(example.labels))
    if fmt in ("parquet", "distillkit"):  # distillkit: decoded by distillkit_records
        ids = _matrix(record["teacher_ids"], k, np.int64)
        probs = _matrix(record["teacher_probs"], k, np.float32)
        if len(ids) != n:
            raise TeacherStoreError(
                f"{source}: example {example.example_id!r} has {len(ids)} rows but the data has "
                f"{n} response positions"
            )
        return ids, probs
    if fmt == "vllm":
        ids, logprobs = vllm_rows(record, example.input_ids, example.labels, k, source)
    else:
        ids, logprobs = axolotl_rows(record, example.input_ids, example.labels, k, source, field)
    return _matrix(ids, k, np.int64), np.exp(_matrix(logprobs, k, np.float64)).astype(np.float32)


def import_store(
    source: str | Path,
    fmt: str,
    examples: list[Encoded],
    metadata: StoreMetadata,
    output: str | Path,
    logprobs_field: str = "logprobs",
    overwrite: bool = False,
    batch_examples: int = 256,
) -> Path:
    """Write a store of ``examples`` (the data's tokenised split) from the records in ``source``."""
    if fmt not in FORMATS:
        raise ValueError(f"import format must be one of {FORMATS}, got {fmt!r}")
    source = Path(source)
    if fmt == "distillkit":
        from first_pl.data.store.distillkit import distillkit_records

        records = distillkit_records(source, examples, metadata)
    else:
        records = load_records(source, fmt)
    if fmt == "parquet":
        check_parquet_metadata(source, metadata)
    missing = [ex.example_id for ex in examples if ex.example_id not in records]
    if missing:
        raise TeacherStoreError(
            f"{source} lacks {len(missing)} of the split's {len(examples)} examples, first {missing[0]!r}"
        )
    extra = len(records) - len(examples)
    if extra:
        print(f"{source}: {extra} record(s) are not in this split and were not imported")
    writer = TeacherStoreWriter(
        output,
        metadata,
        overwrite=overwrite,
        id_length=example_id_length(ex.example_id for ex in examples),
    )
    with writer as w:
        for start in range(w.num_done, len(examples), batch_examples):
            batch = examples[start : start + batch_examples]
            rows = [
                imported_rows(
                    fmt, records[ex.example_id], ex, metadata.k, str(source), logprobs_field
                )
                for ex in batch
            ]
            gold = [
                np.array([ex.labels[t] for t in response_positions(ex.labels)], np.int64)
                for ex in batch
            ]
            w.append(
                [ex.example_id for ex in batch], [r[0] for r in rows], [r[1] for r in rows], gold
            )
    return Path(output)
