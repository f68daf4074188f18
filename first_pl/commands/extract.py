"""`first-pl extract`: run the teacher once over a split and store its top-k per response position.

It takes the same `data` settings as a training config, so the store's examples, tokens and
metadata are exactly what `DistillDataModule` serves and validates later. Launched under
`torchrun` (``WORLD_SIZE > 1``) every rank extracts a contiguous block and rank 0 merges the
shards; alone it is one process. A killed run resumes from ``<output>.partial`` (or each rank's
shard) when started again with the same arguments.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from first_pl.commands.replace import check_store_output
from first_pl.data.distill_datamodule import store_fields
from first_pl.data.qa_datamodule import QADataModule
from first_pl.data.store import StoreMetadata, TeacherStore, partial_path
from first_pl.fileio.output_path import check_output_path
from first_pl.methods.loading import load_model
from first_pl.teacher.extract_launch import committed, extract_in_process_group
from first_pl.teacher.vllm_backend import check_backend_options


def summary(output: Path, resumed: tuple[int, int], seconds: float) -> str:
    store = TeacherStore(output)
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
    accelerator: Literal["auto", "cpu", "gpu"] = "auto",
    overwrite: bool = False,
    progress: bool = True,
    backend: Literal["transformers", "vllm"] = "transformers",
    vllm_args: dict[str, Any] | None = None,
    trust_checkpoint: bool = False,
) -> None:
    """Extract the teacher's top-k next-token distribution at every response position of a split.

    Args:
        data: the data module of the training config (same tokenizer, task, template and
            max_length as the DistillDataModule that will read the store).
        teacher: a first_pl .ckpt file or sharded checkpoint folder, a Hugging Face model
            folder, a .gguf file, or a model name / hub id (`first_pl.methods.loading`).
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
        accelerator: ``auto`` runs the teacher on this rank's GPU when one is visible, else
            on the CPU; ``cpu`` or ``gpu`` force one (the pipeline passes its trainer's choice,
            so a stage's extraction runs where its fit and test run).
        overwrite: replace a first_pl store at ``output`` (kept until the new one is complete);
            any other file there is refused.
        progress: show a progress bar (rank 0).
        backend: ``transformers`` (this process group) or ``vllm``: vLLM's prompt
            log-probabilities, for large teachers on GPUs (the optional extra ``vllm``;
            first_pl/teacher/vllm_backend.py). It writes the same store.
        vllm_args: arguments of ``vllm.LLM`` (``tensor_parallel_size``, ``dtype``, ...).
        trust_checkpoint: load a checkpoint that needs more than tensors and plain data (its
            pickle can run code): only for a file from a source you trust. Default: refused.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = Path(output)
    check_output_path(out, "--output")
    check_store_output(out, overwrite)
    check_backend_options(backend, precision, vllm_args)
    examples = data.split_examples(split)
    if backend == "vllm":  # vLLM shards the teacher over GPUs itself: one process
        from first_pl.teacher.vllm_backend import extract_with_vllm

        resumed, start = committed(partial_path(out)), time.perf_counter()
        extract_with_vllm(data, split, examples, teacher, out, k=k, probs_dtype=probs_dtype,
                          batch_size=batch_size, overwrite=overwrite, progress=progress,
                          vllm_args=vllm_args or {}, compression=compression)  # fmt: skip
        print(summary(out, resumed, time.perf_counter() - start))
        return
    loaded = load_model(teacher, "--teacher", trust=trust_checkpoint)
    model = loaded.module.model
    vocab_size = model.get_output_embeddings().weight.shape[0]
    if k > vocab_size:  # refused before a partial store is started
        raise ValueError(
            f"k is {k} but the teacher's vocabulary has only {vocab_size} tokens; give k <= {vocab_size}"
        )
    metadata = StoreMetadata(
        k=k,
        vocab_size=vocab_size,
        teacher=loaded.identity(),
        probs_dtype=probs_dtype,
        **store_fields(data, data.train_task, split),
    )
    run = extract_in_process_group(
        model,
        examples,
        data.collate_train,
        out,
        metadata,
        precision=precision,
        accelerator=accelerator,
        batch_size=batch_size,
        progress=progress,
        overwrite=overwrite,
        compression=compression,
    )
    if run is not None:  # rank 0
        print(summary(out, (run.resumed_examples, run.resumed_positions), run.seconds))
