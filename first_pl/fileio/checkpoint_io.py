"""Checkpoints written straight to their file, without an in-memory copy.

Lightning's `TorchCheckpointIO` serialises a checkpoint into an in-memory buffer and then copies
the buffer's bytes into the file (`lightning.fabric.utilities.cloud_io._atomic_save`): the whole
checkpoint twice in memory, beside the model it was taken from. For the main job's teacher
(weights and Adam's two moments, 1.2 GB) that is 2.4 GB at every validation's checkpoint, the
largest allocation of the whole job. `DirectCheckpointIO` lets `torch.save` write into a
temporary file beside the target and renames it over the target once it is on disk
(`atomic_write`): as atomic
(a kill leaves the old checkpoint and a `.partial` file that no checkpoint search matches), with
no copy. Remote paths (fsspec URLs such as `s3://`) keep Lightning's way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from fsspec.utils import get_protocol
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from first_pl.fileio.atomic import atomic_write

PARTIAL_SUFFIX = ".partial"


class DirectCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` whose local saves stream to disk (module docstring)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or get_protocol(str(path)) not in ("file", "local"):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda tmp: save_into(checkpoint, tmp), tmp_suffix=PARTIAL_SUFFIX)


def save_into(checkpoint: dict[str, Any], path: Path) -> None:
    """`torch.save` through an open handle, as Lightning's save does: given a file name,
    `torch.save` names the archive's records after it (here the temporary name)."""
    with open(path, "wb") as handle:
        torch.save(checkpoint, handle)
