"""DistillDataModule: teacher rows aligned with labels, workers, in-memory, and every mismatch
between a store and the data refused with the field named."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from first_pl.commands.extract import extract
from first_pl.data.batch import IGNORE_INDEX, DistillBatch
from first_pl.data.distill_datamodule import DistillDataModule, store_fields
from first_pl.data.qa_datamodule import QADataModule
from first_pl.data.store import StoreMetadata, StoreMismatchError, TeacherStore, TeacherStoreWriter
from first_pl.data.template import PromptTemplate
from first_pl.tasks import GeneratedMC

TASK = {"train_size": 24, "validation_size": 4, "test_size": 4, "label_noise": 0.2, "seed": 5}
K = 5


def data_args(model_dir: Path, **overrides) -> dict:
    args = {
        "tokenizer": str(model_dir),
        "train_task": GeneratedMC(**TASK),
        "max_length": 64,
        "batch_size": 8,
        "shuffle": False,
    }
    return {**args, **overrides}


def distill(store: Path, model_dir: Path, **overrides) -> DistillDataModule:
    options = {k: overrides.pop(k) for k in ("in_memory", "check_values") if k in overrides}
    dm = DistillDataModule(store=str(store), **options, **data_args(model_dir, **overrides))
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_model_dir: Path) -> Path:
    """A real store: the tiny teacher extracted by the command over the same data settings."""
    out = tmp_path_factory.mktemp("store") / "teacher.h5"
    data = QADataModule(**data_args(tiny_model_dir))
    extract(data, str(tiny_model_dir), str(out), batch_size=8, progress=False)
    return out


def batches(dm: DistillDataModule) -> list[dict]:
    return list(dm.train_dataloader())


def test_teacher_rows_are_aligned_with_labels(store: Path, tiny_model_dir: Path) -> None:
    dm = distill(store, tiny_model_dir)
    teacher = TeacherStore(store)
    for batch in batches(dm):
        assert DistillBatch.__required_keys__ <= set(batch)  # MC examples add the eval keys
        mask = batch["labels"] != IGNORE_INDEX
        ids, probs = batch["teacher_ids"], batch["teacher_probs"]
        assert ids.dtype == torch.long and probs.dtype == torch.float32
        assert ids.shape == probs.shape == (*batch["labels"].shape, K)
        assert not ids[~mask].any() and not probs[~mask].any()
        for b, example_id in enumerate(batch["example_id"]):
            want_ids, want_probs, gold = teacher.positions(teacher.example_index(example_id))
            np.testing.assert_array_equal(ids[b][mask[b]].numpy(), want_ids)
            np.testing.assert_array_equal(probs[b][mask[b]].numpy(), want_probs.astype(np.float32))
            np.testing.assert_array_equal(batch["labels"][b][mask[b]].numpy(), gold)
        assert (probs[mask].sum(-1) <= 1.002).all() and (
            probs[mask][:, :-1] >= probs[mask][:, 1:]
        ).all()


def assert_same_batches(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x["example_id"] == y["example_id"]
        for key in ("input_ids", "labels", "teacher_ids", "teacher_probs"):
            assert torch.equal(x[key], y[key]), key


def test_workers_and_in_memory_give_identical_batches(store: Path, tiny_model_dir: Path) -> None:
    reference = batches(distill(store, tiny_model_dir))
    assert_same_batches(reference, batches(distill(store, tiny_model_dir, in_memory=True)))
    assert_same_batches(reference, batches(distill(store, tiny_model_dir, num_workers=2)))
    reopened = pickle.loads(pickle.dumps(distill(store, tiny_model_dir).teacher_store))
    assert reopened.positions(0)[0].shape[1] == K


def write_store(
    path: Path, dm: QADataModule, drop: int = 0, short: int = -1, gold_offset: int = 0, **overrides
) -> Path:
    """A synthetic store over ``dm``'s train examples (gold = labels) with planted faults: the
    last ``drop`` examples missing, example ``short`` one position short, gold tokens shifted by
    ``gold_offset``, metadata overrides."""
    examples = dm.examples(dm.train_task, "train")
    examples = examples[: len(examples) - drop]
    fields = {**store_fields(dm, dm.train_task, "train"), "teacher": "synthetic", "k": K}
    meta = StoreMetadata(**{"vocab_size": len(dm.tokenizer), **fields, **overrides})
    with TeacherStoreWriter(path, meta) as writer:
        for i, ex in enumerate(examples):
            gold = np.array([t for t in ex.labels if t != IGNORE_INDEX][: -1 if i == short else None])
            ids = (gold[:, None] + np.arange(K)) % meta.vocab_size
            probs = np.tile(np.linspace(0.25, 0.05, K), (len(gold), 1))
            writer.append([ex.example_id], [ids], [probs], [(gold + gold_offset) % meta.vocab_size])
    return path


MISMATCHES = {
    "split": ({"split": "validation"}, "split is 'validation' but 'train'"),
    "vocab_size": ({"vocab_size": 10}, "vocab_size is 10 but data.tokenizer has"),
    "example_ids": ({"drop": 1}, "lacks 1 example id"),
    "positions": ({"short": 3}, "has 1 response positions in the store but 2 in the data"),
    "gold": ({"gold_offset": 1}, "48 response position.* hold another gold token"),
}


@pytest.mark.parametrize("field", sorted(MISMATCHES))
def test_store_mismatches_name_the_field(field, tiny_model_dir: Path, tmp_path: Path) -> None:
    faults, message = MISMATCHES[field]
    path = write_store(tmp_path / "s.h5", QADataModule(**data_args(tiny_model_dir)), **faults)
    with pytest.raises(StoreMismatchError, match=message) as err:
        distill(path, tiny_model_dir)
    assert err.value.field == field and str(path) in str(err.value)


def test_a_matching_synthetic_store_validates(tiny_model_dir: Path, tmp_path: Path) -> None:
    dm = QADataModule(**data_args(tiny_model_dir))
    path = write_store(tmp_path / "s.h5", dm)
    assert distill(path, tiny_model_dir).teacher_store.num_positions == 2 * TASK["train_size"]
    shifted = write_store(tmp_path / "g.h5", dm, gold_offset=1)
    distill(shifted, tiny_model_dir, check_values=False)  # the gold scan is part of check_values


def other_tokenizer(tiny_tokenizer, folder: Path, model_dir: Path) -> str:
    """The tiny tokenizer plus one word, in a folder that loads like a model's."""
    tokenizer = pickle.loads(pickle.dumps(tiny_tokenizer))
    tokenizer.add_tokens(["zebrafish"])
    tokenizer.save_pretrained(folder)
    shutil.copy(model_dir / "config.json", folder)
    return str(folder)


@pytest.mark.parametrize(
    ("field", "change"),
    [
        (
            "tokenizer_fingerprint",
            lambda tok, tmp, model: {"tokenizer": other_tokenizer(tok, tmp, model)},
        ),
        (
            "template_fingerprint",
            lambda tok, tmp, model: {"template": PromptTemplate(option="{letter}) {text}")},
        ),
        ("task", lambda tok, tmp, model: {"train_task": GeneratedMC(**{**TASK, "seed": 6})}),
    ],
)
def test_data_settings_other_than_the_stores_are_refused(
    field, change, store: Path, tiny_model_dir: Path, tiny_tokenizer, tmp_path: Path
) -> None:
    with pytest.raises(StoreMismatchError, match=f"{field} is .* but .* was expected") as err:
        distill(store, tiny_model_dir, **change(tiny_tokenizer, tmp_path, tiny_model_dir))
    assert err.value.field == field and str(store) in str(err.value)
    assert "first-pl extract" in str(err.value)
