"""Running an extraction alone or as one rank of a `torchrun` group, with resume counts.

`first-pl extract` is launched either as one process or under ``torchrun`` (``WORLD_SIZE > 1``,
every rank extracting a contiguous block, rank 0 merging: `first_pl.teacher.extract`). This
module owns what that launch needs besides the extraction itself: the device of this rank, the
process group for the duration of the call, and what earlier, killed runs already wrote, so a
summary's rates count this run's work only.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import torch
from torch import distributed as dist
from torch import nn

from first_pl.data.store import StoreMetadata, example_id_length, partial_path
from first_pl.data.tokenize import Encoded
from first_pl.devices import resolve_accelerator
from first_pl.precision import autocast_dtype
from first_pl.teacher.extract import extract_distributed, shard_path


def device_for_rank(accelerator: str = "auto") -> torch.device:
    """This rank's GPU (``LOCAL_RANK``) for ``gpu``, and for ``auto`` when there are GPUs;
    else the CPU (``cpu`` keeps a run on the CPU on a machine with GPUs, as its trainer does)."""
    kind, why = resolve_accelerator(accelerator)
    if kind == "gpu":
        if not torch.cuda.is_available():
            raise ValueError(f"--accelerator {accelerator}: no CUDA GPU is visible ({why})")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[tuple[int, int]]:
    """``(rank, world_size)``; under torchrun (``WORLD_SIZE > 1``) a group for the call (nccl
    on GPUs, gloo on the CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1 or dist.is_initialized():
        yield (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield dist.get_rank(), world_size
    finally:
        dist.destroy_process_group()


def committed(path: Path) -> tuple[int, int]:
    """Examples and positions a resumed writer will skip in the partial store at ``path``."""
    try:
        with h5py.File(path, "r") as f:
            n = int(f.attrs["committed_examples"])
            return n, int(f["offsets"][n])
    except (OSError, KeyError):
        return 0, 0


def resumed_counts(output: Path, rank: int, world_size: int) -> tuple[int, int]:
    """What earlier runs already wrote, over all ranks (so the summary's rates are this run's)."""
    own = partial_path(output if world_size == 1 else shard_path(output, rank, world_size))
    counts = committed(own)
    if world_size == 1:
        return counts
    gathered: list[tuple[int, int] | None] = [None] * world_size
    dist.all_gather_object(gathered, counts)
    return sum(c[0] for c in gathered), sum(c[1] for c in gathered)


@dataclass(frozen=True)
class ExtractionRun:
    """What rank 0 reports of a finished extraction: the work earlier runs did, and the time."""

    resumed_examples: int
    resumed_positions: int
    seconds: float


def extract_in_process_group(
    model: nn.Module,
    examples: Sequence[Encoded],
    collate_fn: Callable[[list[Any]], Any],
    output: Path,
    metadata: StoreMetadata,
    *,
    precision: str,
    accelerator: str = "auto",
    batch_size: int,
    progress: bool,
    overwrite: bool,
    compression: str,
) -> ExtractionRun | None:
    """Extract ``examples`` into the store at ``output`` on this rank's device.

    ``accelerator`` (``auto``, ``cpu``, ``gpu``) chooses the device (`device_for_rank`) and
    ``precision`` (``auto``, ``32-true``, ``bf16-mixed``) the autocast dtype of the teacher
    (`first_pl.precision`); rank 0 prints the choice before the teacher runs, as Lightning
    prints its own. Returns the run's counts on rank 0 (after the merge), None on the other
    ranks.
    """
    device = device_for_rank(accelerator)
    with process_group(device) as (rank, world_size):
        if rank == 0:
            output.parent.mkdir(parents=True, exist_ok=True)  # an old store is replaced at the end
        resumed = resumed_counts(output, rank, world_size)
        start = time.perf_counter()
        dtype, reason = autocast_dtype(precision, device.type)
        if rank == 0:
            print(reason)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            extract_distributed(
                model.to(device),
                examples,
                collate_fn,
                output,
                metadata,
                batch_size=batch_size,
                progress=progress,
                overwrite=overwrite,
                id_length=example_id_length(e.example_id for e in examples),
                compression=compression,
            )
        if rank != 0:
            return None
        return ExtractionRun(*resumed, seconds=time.perf_counter() - start)
