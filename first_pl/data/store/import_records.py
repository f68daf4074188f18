"""Reading another tool's teacher records safely: the file, what it is, and the values in it.

`first-pl import-store` reads files other programs wrote, so nothing in them is trusted: a file
that does not parse, a record of another shape, a probability that is not one, each stops the
import with one error naming the file, the example and what was expected, before any row of
it reaches the store. A source is identified by its bytes (`source_identity`) and the store
records it, so a resumed import continues from the same file or not at all.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from first_pl.data.store.format import PROBS_SUM_TOLERANCE, TeacherStoreError
from first_pl.fileio.digest import sha256_of

# What a record of each format holds, for the error that refuses another shape.
EXPECTED = {
    "vllm": "'prompt_logprobs': None, then per prompt token a mapping token_id -> "
    "{'logprob': number, 'rank': integer} as vLLM returns it",
    "axolotl": "per token a list of {'token': 'token_id:<id>', 'logprob': number} (v1), or a list "
    "of log-probabilities with their ids in 'target_token_ids' (v2), in the log-prob field",
    "parquet": "'teacher_ids' and 'teacher_probs': per response position a list of k token ids "
    "and their k probabilities",
}
EXPECTED["distillkit"] = EXPECTED["parquet"]
# Errors that reading a record of another shape raises (a missing key, a string for a number,
# a list where a mapping was expected, rows of unequal length).
SHAPE_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError)


def source_identity(source: Path, fmt: str) -> str:
    """The importer, path, size and sha256 of a source file (or folder) as a JSON string: what
    a store records as its ``import_source`` and a resumed import must match."""
    files = [p for p in source.rglob("*") if p.is_file()] if source.is_dir() else [source]
    return json.dumps(
        {
            "importer": fmt,
            "path": str(source.resolve()),
            "bytes": sum(p.stat().st_size for p in files),
            "sha256": sha256_of(source),
        },
        sort_keys=True,
    )


def read_parquet(path: Path) -> Any:
    """The pyarrow table of ``path``, or one error naming the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise TeacherStoreError(f"{path} is not a readable parquet file ({err})") from err


def _json_rows(source: Path) -> Any:
    try:
        text = source.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise TeacherStoreError(
            f"{source} is not UTF-8 text (byte {err.start}); expected JSON or JSON lines records"
        ) from None
    if source.suffix != ".jsonl":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise TeacherStoreError(
                f"{source} is not JSON ({err}); expected a JSON list of records, or JSON lines "
                "in a .jsonl file"
            ) from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise TeacherStoreError(
                    f"{source} line {number} is not JSON ({err}); expected one JSON record a line"
                ) from None
    return rows


def load_records(source: Path, fmt: str) -> dict[str, Mapping[str, Any]]:
    """Records keyed by ``example_id`` from JSON (a list), JSON lines, or parquet."""
    if not source.is_file():
        raise TeacherStoreError(f"import source {source} does not exist")
    rows = read_parquet(source).to_pylist() if source.suffix == ".parquet" else _json_rows(source)
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


def not_a_record(source: str, fmt: str, example_id: str, err: Exception) -> TeacherStoreError:
    """The error for a record whose shape is not ``fmt``'s (``err`` is what reading it raised)."""
    return TeacherStoreError(
        f"{source}: the record of example {example_id!r} is not one of the {fmt} format: expected "
        f"{EXPECTED[fmt]} ({type(err).__name__}: {err})"
    )


def check_probabilities(
    probs: Sequence[float], where: str, logprobs: bool, total: bool = True
) -> None:
    """Refuse a top-k row that is not part of a distribution: each probability finite and in
    [0, 1], their sum (when ``total``) at most 1 + `PROBS_SUM_TOLERANCE` (float16 rounding).
    ``probs`` are log-probabilities when ``logprobs``; an error shows the value as given."""
    mass = 0.0
    for rank, value in enumerate(probs, start=1):
        p = math.exp(value) if logprobs and not math.isnan(value) else value
        if not 0.0 <= p <= 1.0 + PROBS_SUM_TOLERANCE:  # also NaN
            what = "log-probability" if logprobs else "probability"
            bound = (
                "finite and <= 0 (a probability in [0, 1])" if logprobs else "finite and in [0, 1]"
            )
            raise TeacherStoreError(
                f"{where}: the {what} of rank {rank} is {value!r}; it must be {bound}"
            )
        mass += p
    if total and mass > 1.0 + PROBS_SUM_TOLERANCE:
        raise TeacherStoreError(
            f"{where}: the top-{len(probs)} probabilities sum to {mass:.6g}, above 1 + "
            f"{PROBS_SUM_TOLERANCE:g}; they are not one distribution's (another temperature, "
            "or values that are not log-probabilities)"
        )
