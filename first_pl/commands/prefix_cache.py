"""`first-pl prefix-cache`: the frozen prefix's states of every sequence a job reads, computed once.

Teacher and students that share `model.prefix_layers` (first_pl.prefix) need the same states
after layer L for every training, validation, test and option row. This command runs the prefix
once over all of them (each split of the training task and of every evaluation task, training
rows and option-likelihood rows alike, the latter each prompt once), longest-first in batches,
and writes the store that every later stage opens through `model.prefix_cache`. A row the store lacks is still computed
when first needed, so the store decides speed, never results.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import h5py
import torch

from first_pl.context_cache import shares_context
from first_pl.data.batch import EvalBatch
from first_pl.data.option_batch import shared_rows
from first_pl.data.qa_datamodule import QADataModule
from first_pl.data.tokenize import Encoded
from first_pl.fileio.output_path import OutputPathError, check_output_path
from first_pl.models import ModelSpec, build_model
from first_pl.prefix import FrozenPrefix, prefix_of
from first_pl.prefix.store import save_memo

SPLITS = ("train", "validation", "test")


def job_examples(data: QADataModule) -> list[list[Encoded]]:
    """The encoded examples of every split a job reads, one list per task split (a batch holds
    one task's scoring), training task first: the training task's train split at the training
    length and its validation and test splits at the evaluation length, as the stages encode
    them; the other evaluation tasks' test splits only (the pipeline validates on the training
    task alone; a validation of another task computes its rows when first asked)."""
    splits = [(data.train_task, split) for split in SPLITS] if data.train_task is not None else []
    splits += [(t, "test") for t in data.evaluation_tasks if t is not data.train_task]
    return [
        data.examples(task, split, None if split == "train" else data.eval_length)
        for task, split in splits
    ]


def warm(prefix: FrozenPrefix, data: QADataModule, batch_size: int) -> None:
    """Run the prefix over every row the job's models run (`job_examples`), longest first
    (little padding): the option rows of a task scored by option likelihood, the prompt rows
    of any other."""
    for group in job_examples(data):
        warm_group(prefix, data, sorted(group, key=lambda e: -len(e.input_ids)), batch_size)


def warm_group(prefix: FrozenPrefix, data: QADataModule, examples: list[Encoded], batch_size: int) -> None:
    for start in range(0, len(examples), batch_size):
        batch = data.collate_eval(examples[start : start + batch_size])
        if "option_input_ids" in batch:  # an option-scored task runs its option rows only
            warm_options(prefix, batch, batch_size)
        else:
            prefix(batch["input_ids"], batch["attention_mask"])


def warm_options(prefix: FrozenPrefix, batch: EvalBatch, batch_size: int) -> None:
    """The option rows' states as the evaluation computes them: each prompt once and every
    option against it (`FrozenPrefix.shared_states`), or `batch_size` whole rows at a time
    where the rows do not split (a one-token prompt, an attention that is not plain)."""
    ids, mask = batch["option_input_ids"], batch["option_attention_mask"]
    split = shared_rows(ids, mask, batch["option_labels"], batch["option_context"]) if shares_context(prefix.decoder) else None
    if split is not None:
        prefix.shared_states(ids, mask, split)
        return
    for row in range(0, ids.shape[0], batch_size):
        prefix(ids[row : row + batch_size], mask[row : row + batch_size])


def prefix_cache(
    data: QADataModule, model: ModelSpec, output: str, batch_size: int = 32, overwrite: bool = False
) -> Path:
    """Compute the frozen prefix's states for every sequence of `data` and save them.

    Args:
        data: the data module of the job (its training task and evaluation tasks, templates
            and lengths exactly as the stages that read the store use them).
        model: the model spec of any stage of the job (its source and `prefix_layers` define
            the prefix; the layers above do not matter here).
        output: the store to write (.h5).
        batch_size: rows per prefix forward.
        overwrite: replace an existing prefix store at `output`.
    """
    path = Path(output)
    check_output_path(path, "--output")
    if path.exists() and not (overwrite and h5py.is_hdf5(path)):
        raise OutputPathError(
            f"--output {path} exists; pass --overwrite true to replace an earlier prefix store"
            if h5py.is_hdf5(path)
            else f"--output {path} exists and is not a prefix store; choose another path"
        )
    if not model.prefix_layers:
        raise ValueError("--model.prefix_layers is 0: there is no prefix to compute")
    if batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {batch_size}")
    start = time.perf_counter()
    spec = dataclasses.replace(model, prefix_cache=None)
    prefix = prefix_of(build_model(spec))
    data.setup("fit")
    with torch.inference_mode():
        warm(prefix, data, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_memo(prefix, path)
    tokens = sum(state.shape[0] for state in prefix.memo.values())
    print(
        f"prefix-cache: {len(prefix.memo)} sequences ({prefix.hits} repeats), {tokens} tokens "
        f"after layer {prefix.layers} of {model.name_or_path} in {time.perf_counter() - start:.1f} s; "
        f"{path.stat().st_size / 2**20:.1f} MiB in {path}",
        flush=True,
    )
    return path
