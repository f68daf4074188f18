"""Checks on where a command writes, made before any work so a bad path costs nothing.

`Path.mkdir` under a path whose ancestor is a file raises `FileExistsError` or
`NotADirectoryError` from deep inside the writer, after the model has run; these checks name the
option and the file instead.
"""

from __future__ import annotations

from pathlib import Path


class OutputPathError(ValueError):
    """An output path a command cannot or must not write to; the message names the option."""


def check_output_path(path: str | Path, option: str) -> None:
    """Refuse `path` when its nearest existing ancestor is a file rather than a folder."""
    path = Path(path)
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(
                    f"{option} {path} lies under {parent}, which is a file, not a folder"
                )
            return
