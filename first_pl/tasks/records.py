"""Read task rows from a Hugging Face hub id or from local files in the hub's schema.

Local sources: a file (.json, .jsonl, .parquet, .csv) or a folder holding `<split>.<ext>`.
Errors name the file and, for rows, the row number and the missing field. Text files are read
as `utf-8-sig`: spreadsheet programs write CSV with a byte-order mark, which plain `utf-8`
would glue onto the first column's name. A NaN (how pandas writes a missing value) counts as
missing, so it never becomes the text "nan".
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from first_pl.tasks.base import TaskDataError

SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


def is_local(source: str) -> bool:
    """Paths (existing or written like paths) are local; anything else is a hub id."""
    return Path(source).exists() or source.startswith((".", "/", "~")) or Path(source).suffix in SUFFIXES


def is_single_file(source: str) -> bool:
    """A local source that is one file (all splits carved from it), not a folder of splits."""
    return is_local(source) and not Path(source).expanduser().is_dir()


def split_file(folder: Path, split: str) -> Path | None:
    """The file for `split` in a folder of per-split files, if there is one."""
    for suffix in SUFFIXES:
        candidate = folder / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def read_file(path: Path) -> list[dict[str, Any]]:
    """Rows of one local file; every failure names the file."""
    if not path.is_file():
        raise TaskDataError(f"data file {path} does not exist")
    try:
        if path.suffix == ".jsonl":
            with path.open(encoding="utf-8-sig") as f:
                rows = [json.loads(line) for line in f if line.strip()]
        elif path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8-sig"))
            rows = data if isinstance(data, list) else data.get("data", data.get("examples"))
            if not isinstance(rows, list):
                raise TaskDataError(f"{path}: expected a list of rows (or {{'data': [...]}})")
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq

            rows = pq.read_table(path).to_pylist()
        elif path.suffix == ".csv":
            with path.open(encoding="utf-8-sig", newline="") as f:
                rows = list(csv.DictReader(f))
        else:
            raise TaskDataError(f"{path}: unsupported file type {path.suffix!r}; expected one of {SUFFIXES}")
    except UnicodeDecodeError as err:
        raise TaskDataError(f"{path}: not valid UTF-8 text ({err.reason} at byte {err.start})") from err
    except json.JSONDecodeError as err:
        raise TaskDataError(f"{path}: malformed JSON at line {err.lineno}: {err.msg}") from err
    if not rows:
        raise TaskDataError(f"{path}: holds no rows")
    bad = next((i for i, row in enumerate(rows) if not isinstance(row, dict)), None)
    if bad is not None:
        raise TaskDataError(f"{path}: row {bad} is not an object")
    return rows


def read_rows(
    source: str, split: str, hub_config: str | None = None, asked: str | None = None
) -> tuple[list[dict[str, Any]], str]:
    """Rows of `split` and a label for error messages (the file or `hub:id/split`).

    `asked` is the task split the caller wants when it differs from the source split read
    (CSQA's `test` is the hub's `validation`), so a missing file is explained in the user's terms.
    """
    if is_local(source):
        path = Path(source).expanduser()
        if path.is_dir():
            file = split_file(path, split)
            if file is None:
                reason = f" (the task reads its {asked!r} split from it)" if asked and asked != split else ""
                raise TaskDataError(f"data folder {path} has no {split}{{{','.join(SUFFIXES)}}} file{reason}")
            path = file
        return read_file(path), str(path)
    from datasets import load_dataset

    try:
        dataset = load_dataset(source, hub_config, split=split)
    except Exception as err:  # the hub client raises many types; all mean "cannot load"
        raise TaskDataError(
            f"cannot load hub dataset {source!r} (config {hub_config!r}, split {split!r}): {err}. "
            "Offline, pass a local file or folder in the hub's schema instead."
        ) from err
    return [dict(row) for row in dataset], f"hub:{source}/{split}"


def is_missing(value: Any) -> bool:
    """None, or a float NaN (a missing cell in a pandas-written parquet or JSON file)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def field(row: dict[str, Any], name: str, source: str, index: int) -> Any:
    """A required field of a row; a missing one is reported with file and row number."""
    if name not in row or is_missing(row[name]):
        raise TaskDataError(f"{source}: row {index} is missing field {name!r}")
    return row[name]


def optional_text(row: dict[str, Any], name: str) -> str:
    """An optional text field: missing, None or NaN is the empty string."""
    value = row.get(name)
    return "" if is_missing(value) else str(value)
