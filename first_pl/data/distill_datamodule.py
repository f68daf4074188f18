"""`DistillDataModule`: QADataModule training batches plus the teacher's stored top-k.

The store is joined by example id, not by position in the data, so shuffling, distributed
samplers and dataloader workers need nothing special: each dataset item carries its store row
and the collate function gathers those rows. Before any batch is served the store is checked
against the data it is meant for (tokenizer, template, task, split, examples, positions), so a
store extracted under other settings fails at setup with the field that differs, instead of
training on teacher rows that belong to other tokens.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from first_pl.data.batch import DistillBatch, response_mask, response_positions
from first_pl.data.qa_datamodule import QADataModule
from first_pl.data.store import StoreMismatchError, TeacherStore
from first_pl.data.tokenize import Encoded
from first_pl.models import tokenizer_fingerprint
from first_pl.tasks.base import Task

HINTS = {
    "tokenizer_fingerprint": "the store was extracted with another tokenizer than data.tokenizer",
    "template_fingerprint": "the store was extracted under another data.template",
    "task": "the store was extracted from another data.train_task or other task settings",
    "split": "the store holds another split than the training split",
    "max_length": "the store was extracted under another data.max_length, so the teacher saw "
    "prompts truncated otherwise",
}


def task_identity(task: Task) -> str:
    """What a store records as its task: the name for people, the fingerprint for the check."""
    return f"{task.name}/{task.fingerprint()}"


def store_fields(data: QADataModule, task: Task, split: str) -> dict[str, Any]:
    """The store metadata fields a data module's settings decide.

    `first-pl extract` writes exactly these and `DistillDataModule` expects exactly these, so
    a store made with the same data config always validates and any other never does.
    ``max_length`` is among them: it decides how much of a long prompt the teacher saw.
    """
    return {
        "tokenizer_fingerprint": tokenizer_fingerprint(data.tokenizer),
        "task": task_identity(task),
        "split": split,
        "template_fingerprint": data.template_for(task).fingerprint(),
        "max_length": data.max_length,
    }


@dataclass(frozen=True)
class DistillItem:
    """A training example and the store row holding its teacher distributions."""

    example: Encoded
    row: int


def gather_rows(store: TeacherStore, rows: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids [P, k], probs [P, k], gold [P])`` of the given store rows, concatenated in order.

    One contiguous slice per example (fast from HDF5 and from memory alike); the caller places
    the flat rows at ``labels != IGNORE_INDEX`` in one vectorised assignment.
    """
    parts = [store.positions(row) for row in rows]
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))


class DistillDataModule(QADataModule):
    """QADataModule whose training batches add ``teacher_ids`` / ``teacher_probs``.

    Both are ``[B, L, k]``, aligned with ``labels`` and zero where ``labels == IGNORE_INDEX``
    (``first_pl.data.batch.DistillBatch``). Evaluation batches are QADataModule's, unchanged.

    Args:
        store: the teacher store of the training split, written by ``first-pl extract`` with
            the same data settings.
        in_memory: read the whole store into memory at setup (fastest when it fits).
        check_values: also scan every stored probability (no NaN, negative, or row sum above
            1) and compare its gold tokens with the data's labels; reads the whole store once at
            setup, so a damaged chunk fails its Fletcher-32 check there (the store's sha256 is
            `first-pl verify-store`'s).
        **kwargs: QADataModule's arguments.
    """

    def __init__(
        self, store: str, in_memory: bool = False, check_values: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.store_path = store
        self.in_memory = in_memory
        self.check_values = check_values

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if stage in ("fit", None):
            self.teacher_store  # noqa: B018 - open and validate before the first batch

    @functools.cached_property
    def teacher_store(self) -> TeacherStore:
        """The validated store (opened once; it reopens itself in each dataloader worker)."""
        store = TeacherStore(self.store_path)
        self.validate_store(store)
        return store.load_all() if self.in_memory else store

    def validate_store(self, store: TeacherStore) -> None:
        """Raise a ``StoreMismatchError`` naming the store and the field that does not fit.

        A store written before ``max_length`` was recorded is checked on everything else, with
        a warning that its ``max_length`` cannot be.
        """
        expected = store_fields(self, self.train_task, "train")
        if store.metadata.max_length is None:
            del expected["max_length"]
            rank_zero_warn(
                f"{store.path} does not record the max_length it was extracted under (an older "
                f"first_pl wrote it), so it cannot be checked against data.max_length="
                f"{self.max_length}; if they differ, the teacher saw prompts truncated otherwise: "
                "extract it again to be sure"
            )
        try:
            store.validate_against(expected)
        except StoreMismatchError as err:
            raise StoreMismatchError(
                err.field,
                f"{err} ({HINTS[err.field]}); extract it again with `first-pl extract` and "
                "this data config",
            ) from err
        if store.metadata.vocab_size < len(self.tokenizer):
            raise StoreMismatchError(
                "vocab_size",
                f"{store.path}: vocab_size is {store.metadata.vocab_size} but data.tokenizer has "
                f"{len(self.tokenizer)} tokens",
            )
        examples = self.examples(self.train_task, "train")
        store.validate_against(
            example_ids=[ex.example_id for ex in examples],
            positions_per_example=[len(response_positions(ex.labels)) for ex in examples],
        )
        if self.check_values:
            store.check_values()
            self._validate_gold(store, examples)

    def _validate_gold(self, store: TeacherStore, examples: list[Encoded]) -> None:
        """The store's gold token at each position must be the data's label there."""
        _, _, gold = gather_rows(store, [store.example_index(ex.example_id) for ex in examples])
        labels = np.fromiter(
            (ex.labels[t] for ex in examples for t in response_positions(ex.labels)),
            np.int64,
            len(gold),
        )
        bad = np.flatnonzero(gold.astype(np.int64) != labels)
        if bad.size:
            raise StoreMismatchError(
                "gold",
                f"{store.path}: {bad.size} response position(s) hold another gold token than "
                "the data's labels (tokenisation changed?)",
            )

    def distill_items(self) -> list[DistillItem]:
        """The training examples, each with its store row."""
        store = self.teacher_store
        return [
            DistillItem(ex, store.example_index(ex.example_id))
            for ex in self.examples(self.train_task, "train")
        ]

    def train_dataloader(self) -> DataLoader:
        items = self.distill_items()
        lengths = [len(item.example.input_ids) for item in items]
        return self.train_loader(items, lengths, self.collate_distill)

    def collate_distill(self, items: list[DistillItem]) -> DistillBatch:
        """A training batch with the teacher's top-k placed at the response positions."""
        batch = self.collate_train([item.example for item in items])
        ids, probs, _ = gather_rows(self.teacher_store, [item.row for item in items])
        mask = response_mask(batch["labels"])
        shape = (*mask.shape, self.teacher_store.metadata.k)
        teacher_ids = torch.zeros(shape, dtype=torch.long)
        teacher_probs = torch.zeros(shape, dtype=torch.float32)
        teacher_ids[mask] = torch.from_numpy(ids.astype(np.int64))
        teacher_probs[mask] = torch.from_numpy(probs.astype(np.float32))
        return DistillBatch(**batch, teacher_ids=teacher_ids, teacher_probs=teacher_probs)
