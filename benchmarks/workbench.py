"""The shared material of the benchmarks, built once per run and only when a figure asks.

Everything is made through the library's own entry points (`build_model`, `QADataModule`,
`DistillDataModule`, `TeacherStoreWriter`, `extract_topk`), so a figure measures what users run.
`Settings` holds the sizes; `run.py` picks full or `--quick` ones and the smoke test a tiny
random model.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from first_pl.data.batch import IGNORE_INDEX
from first_pl.data.distill_datamodule import DistillDataModule, store_fields
from first_pl.data.qa_datamodule import QADataModule
from first_pl.data.store import StoreMetadata, TeacherStoreWriter
from first_pl.data.tokenize import Encoded
from first_pl.models import SMOLLM2_ALIAS, ModelSpec, build_model
from first_pl.tasks import GeneratedMC
from first_pl.teacher.extract import extract_topk

Batch = dict[str, Any]


@dataclass
class Settings:
    """Sizes and models of one benchmark run.

    teacher: model source (the offline SmolLM2 alias, or a folder such as the tests' tiny model);
        its folder also provides the tokenizer.
    keep_every: the student keeps every n-th teacher layer.
    batches: teacher batches per timed extraction / forward call.
    train_size: examples of the generated train split behind the DistillDataModule store.
    memory_examples: examples extracted by the 1x memory probe (the 4x one takes four times).
    store_examples: train examples the real teacher extracts for the bytes-per-token figure
        (640: the offline default's train split).
    offline_examples, offline_epochs: the split (its first examples) and the epochs of the
        offline FIRST vs online KD comparison.
    bucket_batches: training batches per epoch of the bucketing figure (one sorted window).
    """

    teacher: str = SMOLLM2_ALIAS
    dtype: str = "float32"
    keep_every: int = 2
    batch_size: int = 16
    k: int = 5
    repeats: int = 5
    batches: int = 1
    train_size: int = 2000
    label_noise: float = 0.2
    temperature: float = 0.5
    metric_n: int = 1_000_000
    calibrate_n: int = 1_000_000
    calibrate_values: int = 60
    memory_examples: int = 32
    store_examples: int = 640
    offline_examples: int = 32
    offline_epochs: int = 3
    bucket_batches: int = 8


class Workbench:
    """Lazily built data, models and stores for one run; `close()` deletes its temporary files."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tmp = Path(tempfile.mkdtemp(prefix="first_pl_bench_"))
        self.timings: dict[str, float] = {}  # measured by one figure, reused by another
        self._paths = itertools.count()

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def fresh_path(self, stem: str = "store") -> Path:
        return self.tmp / f"{stem}{next(self._paths)}.h5"

    # -- data ------------------------------------------------------------------------------

    def data_kwargs(self) -> dict[str, Any]:
        s = self.settings
        task = GeneratedMC(
            train_size=s.train_size, validation_size=16, test_size=16, label_noise=s.label_noise
        )
        return {
            "tokenizer": s.teacher,
            "train_task": task,
            "batch_size": s.batch_size,
            "max_length": 128,
            "shuffle": False,
        }

    @functools.cached_property
    def data(self) -> QADataModule:
        return QADataModule(**self.data_kwargs())

    @functools.cached_property
    def examples(self) -> list[Encoded]:
        return self.data.examples(self.data.train_task, "train")

    def batches(self, n: int) -> list[Batch]:
        """The first ``n`` training batches of the generated task (prompt + response, padded)."""
        size = self.settings.batch_size
        return [self.data.collate_train(self.examples[i * size : (i + 1) * size]) for i in range(n)]

    @functools.cached_property
    def metadata(self) -> StoreMetadata:
        """The store metadata `first-pl extract` would write for this data (computed once: the
        tokenizer fingerprint hashes the whole vocabulary, which the command also does once)."""
        data = self.data
        return StoreMetadata(
            k=self.settings.k,
            vocab_size=self.teacher.get_output_embeddings().weight.shape[0],
            teacher=self.settings.teacher,
            **store_fields(data, data.train_task, "train"),
        )

    # -- models ----------------------------------------------------------------------------

    @functools.cached_property
    def teacher(self) -> nn.Module:
        s = self.settings
        return build_model(ModelSpec(name_or_path=s.teacher, dtype=s.dtype)).eval()

    @functools.cached_property
    def students(self) -> tuple[Any, Any, torch.optim.Optimizer]:
        """FineTune and FIRST over one shared student model and one Adam (the library's own).

        Sharing the model makes "same student" literal and keeps one copy of the weights and
        optimiser state in memory; the weights drift between steps, which costs nothing extra.
        """
        from first_pl.methods import FIRST, FineTune  # Lightning modules: only when asked

        s = self.settings
        spec = ModelSpec(name_or_path=s.teacher, keep_every=s.keep_every, dtype=s.dtype)
        finetune = FineTune(model=spec)
        finetune.configure_model()
        first = FIRST(model=spec, temperature=s.temperature)
        first.model = finetune.model
        finetune.trainer = _TrainerStub()  # type: ignore[assignment]
        optimizer = finetune.configure_optimizers()["optimizer"]
        finetune.train()
        first.train()
        return finetune, first, optimizer

    # -- stores ----------------------------------------------------------------------------

    def extract(self, batches: list[Batch], path: Path | None = None) -> Path:
        """Extract the teacher's top-k over ``batches`` into a new store (the library's path)."""
        path = path or self.fresh_path("extract")
        with TeacherStoreWriter(path, self.metadata) as writer:
            extract_topk(self.teacher, batches, writer, progress=False)
        return path

    @functools.cached_property
    def real_store(self) -> Path:
        """A store of real teacher top-k over the first `batches` batches."""
        return self.extract(self.batches(self.settings.batches))

    @functools.cached_property
    def realistic_store(self) -> Path:
        """Real teacher top-k over the first `store_examples` train examples, default format."""
        n = min(self.settings.store_examples, len(self.examples))
        size = self.settings.batch_size
        batches = [self.data.collate_train(self.examples[i : i + size]) for i in range(0, n, size)]
        return self.extract(batches)

    @functools.cached_property
    def train_store(self) -> Path:
        """A store for the whole train split, with the data's gold tokens and synthetic top-k.

        Running the teacher over the split would take minutes here; its read speed does not
        depend on the values, only on the positions per example, which are the real ones. Its
        uniformly random ids are the worst case for the compressed size (`realistic_store`
        has real rows).
        """
        return self.synthetic_store(self.examples)

    def synthetic_store(self, examples: list[Encoded], path: Path | None = None) -> Path:
        """A complete store over ``examples``: their gold tokens, `synthetic_topk` rows."""
        rng = np.random.default_rng(0)
        path = path or self.fresh_path("synthetic")
        with TeacherStoreWriter(path, self.metadata) as writer:
            for start in range(0, len(examples), 4096):
                chunk = examples[start : start + 4096]
                gold = [np.array([t for t in ex.labels if t != IGNORE_INDEX]) for ex in chunk]
                flat = np.concatenate(gold)
                ids, probs = synthetic_topk(flat, self.metadata.k, self.metadata.vocab_size, rng)
                writer.append(
                    [ex.example_id for ex in chunk], ids, probs, flat, counts=[len(g) for g in gold]
                )
        return path

    @functools.cached_property
    def distill_data(self) -> DistillDataModule:
        data = DistillDataModule(store=str(self.train_store), **self.data_kwargs())
        data.setup("fit")
        return data


def repeated(examples: list[Encoded], copies: int) -> list[Encoded]:
    """``examples`` ``copies`` times over under new ids: more data with the same batch shapes."""
    return [
        dataclasses.replace(ex, example_id=f"{ex.example_id}#{copy}")
        for copy in range(copies)
        for ex in examples
    ]


class _TrainerStub:
    """Just enough of a Trainer for `MethodModule.configure_optimizers` (the schedule length)."""

    estimated_stepping_batches = 1000


def synthetic_topk(
    gold: np.ndarray, k: int, vocab_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Plausible top-k rows: ids with the gold token first, descending probabilities < 1 in sum."""
    n = len(gold)
    ids = rng.integers(0, vocab_size, size=(n, k))
    ids[:, 0] = gold
    probs = -np.sort(-rng.dirichlet(np.ones(k + 1), size=n)[:, :k], axis=1)
    return ids, probs.astype(np.float32)
