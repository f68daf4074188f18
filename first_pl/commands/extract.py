"""`first-pl extract`: run the teacher once over a split and store its top-k per response position.

It takes the same `data` settings as a training config, so the store's examples, tokens and
metadata are exactly what `DistillDataModule` serves and validates later. Launched under
`torchrun` (``WORLD_SIZE > 1``) every rank extracts a contiguous block and rank 0 merges the
shards; alone it is one process. A killed run resumes from ``<output>.partial`` (or each rank's
shard) when started again with the same arguments.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import h5py
import torch
from torch import distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from first_pl.commands.output_path import check_output_path
from first_pl.data.distill_datamodule import store_fields
from first_pl.data.qa_datamodule import QADataModule
from first_pl.data.store import (
    StoreMetadata,
    TeacherStore,
    TeacherStoreError,
    example_id_length,
    partial_path,
)
from first_pl.data.tokenize import Encoded
from first_pl.knowledge.extract import extract_distributed, shard_path
from first_pl.knowledge.vllm_backend import check_backend_options
from first_pl.models import ModelSpec, build_model
from first_pl.modules.checkpoint import load_strategy
from first_pl.precision import autocast_dtype


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_teacher(teacher: str) -> tuple[nn.Module, str]:
    """The teacher's Hugging Face model and the identity a store records for it.

    A Lightning ``.ckpt`` (any first_pl strategy, typically a FineTune) is identified by the
    sha256 of its file, since its name says nothing about which weights it holds; anything
    else goes through `ModelSpec` (offline alias, hub id, folder, GGUF) and is named as given.
    """
    path = Path(teacher)
    if path.suffix == ".ckpt":
        return load_strategy(path).model, f"{path.name} sha256:{file_sha256(path)}"
    return build_model(ModelSpec(name_or_path=teacher)), teacher


def split_examples(data: QADataModule, split: str) -> list[Encoded]:
    """The tokenised examples of ``data.train_task``'s split, in the data module's fixed order."""
    if data.train_task is None:
        raise ValueError("data.train_task is required: it names the task whose split is extracted")
    return data.examples(data.train_task, split)


def split_loader(data: QADataModule, split: str, batch_size: int) -> DataLoader:
    """Unshuffled training-format batches of one split (labels on the response tokens)."""
    return DataLoader(
        split_examples(data, split),
        batch_size=batch_size,
        shuffle=False,
        collate_fn=data.collate_train,
    )


def device_for_rank() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


@contextlib.contextmanager
def process_group() -> Iterator[tuple[int, int]]:
    """``(rank, world_size)``; under torchrun (``WORLD_SIZE > 1``) a gloo/nccl group for the call."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1 or dist.is_initialized():
        yield (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(device_for_rank())
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
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


def summary(output: Path, resumed: tuple[int, int], seconds: float) -> str:
    store = TeacherStore(output, verify=False)
    examples, positions = len(store) - resumed[0], store.num_positions - resumed[1]
    lines = {
        "store": str(output),
        "examples": f"{len(store)} ({examples} this run)",
        "positions": f"{store.num_positions} ({positions} this run)",
        "seconds": f"{seconds:.1f}",
        "examples/s": f"{examples / max(seconds, 1e-9):.1f}",
        "tokens/s": f"{positions / max(seconds, 1e-9):.1f}",
        "bytes/position": f"{output.stat().st_size / max(store.num_positions, 1):.1f}",
    }
    store.close()
    return "\n".join(f"{key:>15}: {value}" for key, value in lines.items())


def extract(
    data: QADataModule,
    teacher: str,
    output: str,
    split: str = "train",
    k: int = 5,
    probs_dtype: Literal["float16", "float32"] = "float16",
    compression: Literal["gzip", "none"] = "gzip",
    batch_size: int = 8,
    precision: Literal["auto", "32-true", "bf16-mixed"] = "auto",
    overwrite: bool = False,
    progress: bool = True,
    backend: Literal["transformers", "vllm"] = "transformers",
    vllm_args: dict[str, Any] | None = None,
) -> None:
    """Extract the teacher's top-k next-token distribution at every response position of a split.

    Args:
        data: the data module of the training config (same tokenizer, task, template and
            max_length as the DistillDataModule that will read the store).
        teacher: model name, hub id, folder or .gguf file, or a first_pl Lightning .ckpt.
        output: the store's path; ``<output>.partial`` is resumed if a run was killed.
        split: which split of ``data.train_task`` (``train`` for distillation, ``validation``
            for choosing the temperature).
        k: how many top tokens to keep per position.
        probs_dtype: dtype of the stored probabilities.
        compression: of the stored ids and probabilities, applied by the store writer as it
            publishes the store: ``gzip`` (about half the bytes of real top-k rows, slower
            random reads) or ``none``.
        batch_size: examples per teacher forward pass (per process).
        precision: ``auto`` runs the teacher under bf16 autocast only where the hardware
            multiplies bf16 natively (``first_pl.precision``), else in float32; stored
            probabilities are float32 softmaxes either way.
        overwrite: replace a complete store at ``output`` (kept until the new one is complete).
        progress: show a progress bar (rank 0).
        backend: ``transformers`` (this process group) or ``vllm``: vLLM's prompt
            log-probabilities, for large teachers on GPUs (the optional extra ``vllm``;
            first_pl/knowledge/vllm_backend.py). It writes the same store.
        vllm_args: arguments of ``vllm.LLM`` (``tensor_parallel_size``, ``dtype``, ...).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = Path(output)
    check_output_path(out, "--output")
    if out.exists() and not overwrite:
        raise TeacherStoreError(
            f"{out} already exists as a complete store; pass --overwrite true to replace it"
        )
    check_backend_options(backend, precision, vllm_args)
    examples = split_examples(data, split)
    if backend == "vllm":  # vLLM shards the teacher over GPUs itself: one process
        from first_pl.knowledge.vllm_backend import extract_with_vllm

        resumed, start = committed(partial_path(out)), time.perf_counter()
        extract_with_vllm(data, split, examples, teacher, out, k=k, probs_dtype=probs_dtype,
                          batch_size=batch_size, overwrite=overwrite, progress=progress,
                          vllm_args=vllm_args or {}, compression=compression)  # fmt: skip
        print(summary(out, resumed, time.perf_counter() - start))
        return
    model, identity = load_teacher(teacher)
    vocab_size = model.get_output_embeddings().weight.shape[0]
    if k > vocab_size:  # refused before a partial store is started
        raise ValueError(
            f"k is {k} but the teacher's vocabulary has only {vocab_size} tokens; give k <= {vocab_size}"
        )
    metadata = StoreMetadata(
        k=k,
        vocab_size=vocab_size,
        teacher=identity,
        probs_dtype=probs_dtype,
        **store_fields(data, data.train_task, split),
    )
    with process_group() as (rank, world_size):
        if rank == 0:
            out.parent.mkdir(parents=True, exist_ok=True)  # an old store is replaced at the end
        resumed = resumed_counts(out, rank, world_size)
        start = time.perf_counter()
        device = device_for_rank()
        dtype, reason = autocast_dtype(precision, device.type)
        if rank == 0:
            print(reason)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            extract_distributed(
                model.to(device),
                examples,
                data.collate_train,
                out,
                metadata,
                batch_size=batch_size,
                progress=progress,
                overwrite=overwrite,
                id_length=example_id_length(e.example_id for e in examples),
                compression=compression,
            )
        if rank == 0:
            print(summary(out, resumed, time.perf_counter() - start))
