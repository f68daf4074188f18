"""The gold answer's position counts and the constant-answer baseline in `metrics_{split}.json`,
against counts taken directly from the data."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest
import torch
from synthetic_eval import SyntheticDataModule, SyntheticModule

from first_pl.callbacks import CalibrationEvaluation


def test_metrics_record_gold_positions_and_the_constant_answer_baseline(tmp_path):
    dm = SyntheticDataModule({"three": 90, "four": 61})
    trainer = pl.Trainer(
        default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False,
        enable_progress_bar=False, enable_model_summary=False,
        callbacks=[CalibrationEvaluation(n_resamples=20)],
    )  # fmt: skip
    trainer.test(SyntheticModule(), datamodule=dm)
    entries = json.loads((tmp_path / "metrics_test.json").read_text())["tasks"]
    for task in dm.tasks:
        counts = torch.bincount(task.gold).tolist()
        entry = entries[task.name]
        assert entry["gold_positions"] == dict(zip("ABCD", counts, strict=False))
        best = max(range(len(counts)), key=lambda i: (counts[i], -i))
        assert entry["constant_answer"] == {"answer": "ABCD"[best], "acc": pytest.approx(100 * counts[best] / len(task))}
        assert sum(entry["gold_positions"].values()) == entry["n"] == len(task)
