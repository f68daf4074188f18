"""One atomic write: readers of a result see the old file or the whole new one, never half.

The content goes to a temporary name in the same folder (so the rename cannot cross file
systems), is flushed to disk, then renamed over the target. A write that fails or is killed
leaves at most the temporary file or folder, which the next attempt does not read.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: Path, write: Callable[[Path], object], tmp_suffix: str | None = None) -> None:
    """Call `write(tmp)` then rename `tmp` onto `path`; `tmp` keeps `path`'s suffix for writers
    that choose a format by it (matplotlib's `savefig`), or ends in `tmp_suffix` where a file
    left by a kill must not match a search for `path`'s kind (`*.ckpt`)."""
    path = Path(path)
    suffix = path.suffix if tmp_suffix is None else tmp_suffix
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{suffix}")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, value: Any) -> None:
    """`value` as indented JSON (keys sorted, non-JSON values as `str`), written atomically."""
    text = json.dumps(value, indent=2, sort_keys=True, default=str)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_folder(path: Path, write: Callable[[Path], object]) -> Path:
    """Call `write(staging)` on an empty folder beside `path`, then rename it onto `path`: a
    folder of several files (a converted model, an export) appears whole or not at all. An
    existing `path` is replaced (callers decide whether it may be); a failed write removes the
    staging folder."""
    path = Path(path)
    staging = path.with_name(f".{path.name}.tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)  # left by a killed run of this pid number
    staging.mkdir(parents=True)
    try:
        write(staging)
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path
