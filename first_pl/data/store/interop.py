"""Stores that travel: teacher top-k from other tools into the HDF5 store, and a store out to a
Hugging Face `datasets` parquet (docs/STORE_FORMAT.md, "Import" and "Export"; the export and its
schema metadata are `first_pl.data.store.parquet`).

Every source is aligned with the tokenised data the store will serve: a record is joined to its
example by ``example_id``, its positions to the example's response positions, and it must
cover every one of them. vLLM's ``prompt_logprobs`` holds the actual prompt token at every
position, which is checked against the data's labels, so a source tokenised another way fails
by name instead of training on shifted rows. Sources index per *input* token (entry ``j`` is the
distribution of ``input_ids[j]`` given the tokens before it); the store indexes per label
position ``t`` (predicting ``input_ids[t + 1]``), so row ``t`` is entry ``t + 1``. A record with
entries missing or added is refused, never shifted into place. Reading the files, their
identity and the value checks are `first_pl.data.store.import_records`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from first_pl.data.batch import response_positions
from first_pl.data.store.format import StoreMetadata, TeacherStoreError, example_id_length
from first_pl.data.store.import_records import (
    SHAPE_ERRORS,
    check_probabilities,
    load_records,
    not_a_record,
    source_identity,
)
from first_pl.data.store.parquet import check_parquet_metadata
from first_pl.data.store.writer import TeacherStoreWriter
from first_pl.data.tokenize import Encoded

FORMATS = ("vllm", "axolotl", "parquet", "distillkit")


def _entry(entries: list[Any], t: int, offset: int, example_id: str, source: str) -> Any:
    j = t + 1 - offset
    if not 0 <= j < len(entries) or entries[j] is None:
        raise TeacherStoreError(
            f"{source}: example {example_id!r} has no teacher distribution for response position "
            f"{t} (entry {j} of {len(entries)}); it was made from another tokenisation or length"
        )
    return entries[j]


def _check_length(entries: list[Any], tokens: int, expected: tuple[int, ...], where: str) -> None:
    """Refuse a record without one entry per token: its rows cannot be aligned with them."""
    if len(entries) not in expected:
        raise TeacherStoreError(
            f"{where} has {len(entries)} entries but the data has {tokens} tokens (expected "
            f"{' or '.join(map(str, expected))} entries): a record with entries "
            "missing or added cannot be aligned with the tokens; import a whole record made from "
            "this tokenisation and max_length"
        )


def _top(pairs: list[tuple[int, float]], k: int, where: str) -> list[tuple[int, float]]:
    """The first ``k`` of ``(token, logprob)`` pairs by descending log-probability (ties by
    token id, so equal inputs give equal rows), checked as part of one distribution."""
    if len(pairs) < k:
        raise TeacherStoreError(
            f"{where} holds {len(pairs)} top tokens, fewer than k={k}; import with a smaller --k"
        )
    check_probabilities([lp for _, lp in pairs], where, logprobs=True, total=False)
    top = sorted(pairs, key=lambda pair: (-pair[1], pair[0]))[:k]
    check_probabilities([lp for _, lp in top], where, logprobs=True)
    return top


def vllm_rows(
    record: Mapping[str, Any], input_ids: list[int], labels: list[int], k: int, source: str
):
    """``(ids, logprobs)`` from a vLLM ``prompt_logprobs`` list: per position a mapping
    ``token_id -> {"logprob", "rank", "decoded_token"}`` (JSON keys are strings), None first.

    vLLM adds the actual prompt token to each mapping (rank > k when outside the top-k): it must
    be the data's label there. The entries of rank <= k are the top-k, ordered by
    log-probability: vLLM's rank counts the larger log-probabilities, so the two agree in its
    output, and the store's columns must descend by probability whatever a source's ranks say.
    An entry of rank above k with a log-probability above a top-k one's is refused: the ranks
    would then not say which tokens are the top-k.
    """
    example_id, entries = record["example_id"], record["prompt_logprobs"]
    given = record.get("prompt_token_ids")
    if given is not None and list(given) != list(input_ids):
        raise TeacherStoreError(
            f"{source}: prompt_token_ids of example {example_id!r} differ from the data's tokenisation"
        )
    n = len(input_ids)
    _check_length(entries, n, (n,), f"{source}: prompt_logprobs of example {example_id!r}")
    ids, logprobs = [], []
    for t in response_positions(labels):
        entry = _entry(entries, t, 0, example_id, source)
        where = f"{source}: example {example_id!r} position {t + 1}"
        if str(labels[t]) not in {str(token) for token in entry}:
            raise TeacherStoreError(
                f"{where} scores other tokens than the data's token {labels[t]} (vLLM always "
                "includes the actual prompt token): another tokenisation"
            )
        ranked = {int(token): (v.get("rank"), float(v["logprob"])) for token, v in entry.items()}
        members = [
            (i, lp) for i, (rank, lp) in ranked.items() if rank is not None and int(rank) <= k
        ]
        top = _top(members, k, where)
        (last, lowest), kept = top[-1], {token for token, _ in top}
        for token, (rank, lp) in ranked.items():
            if token not in kept and lp > lowest:
                raise TeacherStoreError(
                    f"{where}: token {token} has rank {rank} but log-probability {lp!r}, above "
                    f"{lowest!r} of token {last} in the top-{k}: ranks and log-probabilities disagree"
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
    """``(ids, logprobs)`` from axolotl's KD log-prob field: one row per input token after the
    first (or per input token, the first one empty), so the last row is the last token's.
    v1 rows are lists of ``{"token": "token_id:<id>", "logprob": x}``; v2 rows are lists of
    log-probabilities with the ids in ``target_token_ids``.

    axolotl left-pads a shorter list; here a shorter list is refused, since rows missing at its
    end would move every row onto another token.
    """
    example_id = record["example_id"]
    if field not in record:
        raise TeacherStoreError(
            f"{source}: example {example_id!r} has no field {field!r} (set --logprobs_field)"
        )
    entries, n = record[field], len(input_ids)
    _check_length(entries, n, (n - 1, n), f"{source}: field {field!r} of example {example_id!r}")
    offset = n - len(entries)
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
        top = _top(pairs, k, f"{source}: example {example_id!r} position {t + 1}")
        ids.append([token for token, _ in top])
        logprobs.append([lp for _, lp in top])
    return ids, logprobs


def _matrix(rows: list, k: int, dtype: type) -> np.ndarray:
    return (
        np.asarray(rows, dtype).reshape(len(rows), -1)[:, :k] if rows else np.zeros((0, k), dtype)
    )


def _stored_rows(record: Mapping[str, Any], example: Encoded, k: int, source: str):
    """``(ids, probs)`` of a record that already holds store rows (first_pl parquet, decoded
    DistillKit): one row per response position, each checked as a distribution's top-k."""
    n = len(response_positions(example.labels))
    ids = _matrix(record["teacher_ids"], k, np.int64)
    probs = _matrix(record["teacher_probs"], k, np.float32)
    if len(ids) != n or len(probs) != n:
        raise TeacherStoreError(
            f"{source}: example {example.example_id!r} has {len(ids)} rows of teacher_ids and "
            f"{len(probs)} of teacher_probs but the data has {n} response positions"
        )
    for row, values in enumerate(probs.tolist()):
        where = f"{source}: example {example.example_id!r} response position {row} of {n}"
        check_probabilities(values, where, logprobs=False)
    return ids, probs


def imported_rows(
    fmt: str,
    record: Mapping[str, Any],
    example: Encoded,
    k: int,
    source: str,
    field: str,
) -> tuple[np.ndarray, np.ndarray]:
    """``(ids [n, k], probs [n, k])`` of one example from a record of ``fmt``; a record of
    another shape is refused naming the source, the example and the shape expected."""
    try:
        if fmt in ("parquet", "distillkit"):  # distillkit: decoded by distillkit_records
            return _stored_rows(record, example, k, source)
        if fmt == "vllm":
            ids, logprobs = vllm_rows(record, example.input_ids, example.labels, k, source)
        else:
            ids, logprobs = axolotl_rows(
                record, example.input_ids, example.labels, k, source, field
            )
        probs = np.exp(_matrix(logprobs, k, np.float64)).astype(np.float32)
        return _matrix(ids, k, np.int64), probs
    except TeacherStoreError:
        raise
    except SHAPE_ERRORS as err:
        raise not_a_record(source, fmt, example.example_id, err) from err


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
    """Write a store of ``examples`` (the data's tokenised split) from the records in ``source``.

    The store records the source's identity (`source_identity`) as its ``import_source``, so a
    partial store left by a failed import resumes only from the same file.
    """
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
        provenance={"import_source": source_identity(source, fmt)},
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
