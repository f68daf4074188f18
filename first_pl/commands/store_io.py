"""`first-pl import-store` and `first-pl export-store`: teacher top-k in and out of the HDF5 store.

Import reads another tool's teacher outputs (vLLM ``prompt_logprobs`` JSON, axolotl's KD
log-prob field, DistillKit's compressed parquet, or a first_pl parquet export) for one split
of the data config and writes a store with the metadata `first-pl extract` would write for
that data, so `DistillDataModule` validates it the same way (tokenizer, template, task,
split, examples, positions, gold).
Export writes a store as a Hugging Face `datasets` parquet (docs/STORE_FORMAT.md).
Verify recomputes a store's sha256 checksums, its identity, which no open recomputes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from first_pl.commands.replace import check_export_output, check_not_an_input, check_store_output
from first_pl.data.distill_datamodule import store_fields
from first_pl.data.qa_datamodule import QADataModule
from first_pl.data.store import StoreMetadata, TeacherStore
from first_pl.data.store.interop import import_store as import_records
from first_pl.data.store.parquet import export_parquet


def import_store(
    data: QADataModule,
    source: str,
    format: Literal["vllm", "axolotl", "parquet", "distillkit"],  # noqa: A002 - the option users type
    output: str,
    split: str = "train",
    teacher: str = "imported",
    k: int = 5,
    probs_dtype: Literal["float16", "float32"] = "float16",
    logprobs_field: str = "logprobs",
    overwrite: bool = False,
) -> None:
    """Import teacher top-k for one split of ``data.train_task`` into an HDF5 store.

    Args:
        data: the data module of the training config (tokenizer, task, template, max_length).
        source: .json / .jsonl / .parquet file of records, each with an ``example_id``; for
            ``distillkit`` the folder ``distillkit sample-logits`` wrote (or one of its
            parquet files) with its ``compression_config.yaml``.
        format: ``vllm`` (``prompt_logprobs`` as vLLM returns it), ``axolotl`` (the KD
            ``logprobs_field``, v1 token strings or v2 with ``target_token_ids``),
            ``parquet`` (a `first-pl export-store` file), or ``distillkit`` (DistillKit's
            bit-packed parquet, joined to the examples by ``input_ids``).
        output: the store to write (.h5).
        split: which split of ``data.train_task`` the records are for.
        teacher: the teacher's name, recorded in the store; the source file's importer, path,
            size and sha256 are recorded beside it (``import_source``), and a partial store
            left by a failed import resumes only from that same file.
        k: top tokens to keep per position (the source must hold at least k).
        probs_dtype: dtype of the stored probabilities.
        logprobs_field: axolotl's field holding the log-probabilities.
        overwrite: replace an existing store (only a first_pl store).
    """
    out = Path(output)
    check_not_an_input(out, "--output", source=source)
    check_store_output(out, overwrite)
    metadata = StoreMetadata(
        k=k,
        vocab_size=len(data.tokenizer),
        teacher=teacher,
        probs_dtype=probs_dtype,
        **store_fields(data, data.train_task, split),
    )
    examples = data.split_examples(split)
    import_records(source, format, examples, metadata, out, logprobs_field, overwrite)
    store = TeacherStore(out)
    print(
        f"imported {len(store)} examples, {store.num_positions} positions (k={k}) from {source} into {out}"
    )
    store.close()


def export_store(store: str, output: str, overwrite: bool = False) -> None:
    """Write a teacher store as a Hugging Face `datasets` parquet (one row per example).

    Args:
        store: the HDF5 store.
        output: the .parquet file; load it with ``datasets.Dataset.from_parquet(output)``.
        overwrite: replace an existing file (only a first_pl store export); the new file is
            written under a temporary name and renamed, so a failure leaves the old one.
    """
    out = Path(output)
    check_not_an_input(out, "--output", store=store)
    check_export_output(out, overwrite)
    export_parquet(store, out)
    print(f"exported {store} to {out}")


def verify_store(store: str) -> None:
    """Check a teacher store against the sha256 of each dataset recorded when it was written.

    Opening a store does not hash it (HDF5 checks each chunk's Fletcher-32 as it is read, and a
    whole-store hash would cost a full read at every open); this full read does, and also
    checks the probabilities (no NaN, negative, or row sum above 1). An export runs the same
    checksum check first.

    Args:
        store: the HDF5 store.
    """
    opened = TeacherStore(store)
    try:
        opened.verify_checksums()
        opened.check_values()
        print(
            f"{store}: {len(opened)} examples, {opened.num_positions} positions; every "
            "dataset matches its recorded sha256"
        )
    finally:
        opened.close()
