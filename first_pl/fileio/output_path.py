"""Checks on where a command writes, made before any work so a bad path costs nothing.

`Path.mkdir` under a path whose ancestor is a file raises `FileExistsError` or
`NotADirectoryError` from deep inside the writer, and a read-only folder `PermissionError` or
`OSError: Read-only file system`, after the model has run; these checks name the option, the
path and the problem instead.
"""

from __future__ import annotations

import os
from pathlib import Path


class OutputPathError(ValueError):
    """An output path a command cannot or must not write to; the message names the option."""


def check_output_path(path: str | Path, option: str, folder: bool = False) -> None:
    """Refuse `path` when the command could not write it: its nearest existing ancestor (the
    path itself too, for a `folder`) is a file, or a folder this process may not write in (a
    read-only file system, no permission; `os.access` tells both, also for root)."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise OutputPathError(f"{option} {path} is a file, not a folder")
    for parent in (path, *path.parents) if folder else path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(
                    f"{option} {path} lies under {parent}, which is a file, not a folder"
                )
            if not os.access(parent, os.W_OK | os.X_OK):
                where = "" if parent == path else f" lies under {parent}, which"
                raise OutputPathError(
                    f"{option} {path}{where} is not writable (a read-only file system or no "
                    f"permission); choose a folder you can write to"
                )
            return
