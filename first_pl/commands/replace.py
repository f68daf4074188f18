"""What `--overwrite true` may replace: only a file of the kind the command writes.

A command that writes a teacher store (`extract`, `import-store`) or a store export
(`export-store`) checks the existing file at its output before any work: `--overwrite true`
replaces a first_pl store (complete, or a partial one) or a first_pl parquet export, and
nothing else, so a mistyped path never destroys a config, a data file or the very input the
command is reading. Without `--overwrite` the refusal says what the file is, so the user can
tell an earlier result from a mistake.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from first_pl.data.store import StoreMetadata, TeacherStoreError
from first_pl.fileio.output_path import OutputPathError

# What every first_pl store holds, complete or partial, of any readable format version.
_STORE_DATASETS = ("example_ids", "offsets", "ids", "probs")
_STORE_ATTRS = ("format_version", *(f.name for f in dataclasses.fields(StoreMetadata)))


def check_not_an_input(output: Path, option: str, **inputs: str | Path) -> None:
    """Refuse an output that is one of the command's inputs (the same file by any path:
    a relative path, a symlink, a hard link), since writing it would destroy what is read."""
    for name, source in inputs.items():
        if output.exists() and Path(source).exists() and os.path.samefile(output, source):
            raise OutputPathError(
                f"{option} {output} is the same file as --{name} {source}: writing it would "
                f"destroy the input; choose another {option}"
            )


def store_kind(path: Path) -> str | None:
    """`complete` or `partial` when `path` is an HDF5 file with a first_pl store's datasets and
    metadata attributes, else None."""
    import h5py

    try:
        if not path.is_file() or not h5py.is_hdf5(path):
            return None
        with h5py.File(path, "r") as file:
            if not all(name in file for name in _STORE_DATASETS):
                return None
            if not all(name in file.attrs for name in _STORE_ATTRS):
                return None
            return "complete" if bool(file.attrs.get("complete", False)) else "partial"
    except (OSError, KeyError):
        return None


def describe(path: Path) -> str:
    """What a file that is not a first_pl output is, in a few words for an error message."""
    if path.is_dir():
        return "a folder"
    if not path.is_file():
        return "not a regular file"
    size = path.stat().st_size
    if size == 0:
        return "an empty file"
    with path.open("rb") as handle:
        head = handle.read(4096)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return f"an HDF5 file without a teacher store's datasets and metadata, {size} bytes"
    if head.startswith(b"PAR1"):
        return f"a parquet file, {size} bytes"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return f"a binary file, {size} bytes"
    return f"a text file, {size} bytes"


def check_store_output(path: Path, overwrite: bool, option: str = "--output") -> None:
    """Refuse an existing `path` unless it is a first_pl store and `overwrite` is given."""
    if not path.exists() and not path.is_symlink():
        return
    kind = store_kind(path)
    if kind is None:
        raise OutputPathError(
            f"{option} {path} already exists and is not a teacher store ({describe(path)}); "
            f"--overwrite true replaces only a teacher store: choose another {option}"
        )
    if not overwrite:
        what = "a complete store" if kind == "complete" else "a partial store (never finished)"
        raise TeacherStoreError(
            f"{path} already exists as {what}; pass --overwrite true to replace it"
        )


def check_export_output(path: Path, overwrite: bool, option: str = "--output") -> None:
    """Refuse an existing `path` unless it is a first_pl store export and `overwrite` is given."""
    if not path.exists() and not path.is_symlink():
        return
    from first_pl.data.store.parquet import parquet_metadata

    try:
        parquet_metadata(path)
    except Exception:  # pyarrow raises several types for a file that is not parquet
        raise OutputPathError(
            f"{option} {path} already exists and is not a first_pl store export "
            f"({describe(path)}); --overwrite true replaces only a store export: choose "
            f"another {option}"
        ) from None
    if not overwrite:
        raise TeacherStoreError(
            f"{path} already exists (a first_pl store export); pass --overwrite true to replace it"
        )
