"""`QADataModule.split_examples` / `split_loader`: the examples a teacher store of a split holds."""

from __future__ import annotations

import pytest
import torch

from first_pl.data.qa_datamodule import QADataModule
from first_pl.tasks import GeneratedMC

TASK = {"train_size": 6, "validation_size": 5, "test_size": 2, "seed": 3}


def test_split_loader_serves_the_split_in_order_as_training_batches(tiny_model_dir) -> None:
    data = QADataModule(tokenizer=str(tiny_model_dir), train_task=GeneratedMC(**TASK), max_length=64)
    examples = data.split_examples("validation")
    assert examples == data.examples(data.train_task, "validation") and len(examples) == 5
    batches = list(data.split_loader("validation", batch_size=2))
    assert [len(b["example_id"]) for b in batches] == [2, 2, 1]
    assert [i for b in batches for i in b["example_id"]] == [e.example_id for e in examples]
    first = data.collate_train(examples[:2])  # labels on the response tokens, as in training
    for key, value in first.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(batches[0][key], value), key


def test_a_data_module_without_a_train_task_is_refused_by_name(tiny_model_dir) -> None:
    data = QADataModule(tokenizer=str(tiny_model_dir), eval_tasks=[GeneratedMC(**TASK)])
    with pytest.raises(ValueError, match="data.train_task is required: it names the task whose split is extracted"):
        data.split_examples("train")
