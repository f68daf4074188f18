"""CalibrationEvaluation under 2-process DDP on CPU equals the single-process run."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest
from lightning.pytorch.loggers import CSVLogger
from synthetic_eval import SyntheticDataModule, SyntheticModule

from first_pl.callbacks import CalibrationEvaluation


def run_test(tmp_path, **trainer_kwargs) -> dict:
    trainer = pl.Trainer(
        default_root_dir=tmp_path, logger=CSVLogger(tmp_path, name="", version=""),
        callbacks=[CalibrationEvaluation(n_resamples=100)], enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", **trainer_kwargs,
    )  # fmt: skip
    # odd sizes: DistributedSampler pads each set with a repeat, which must not count twice
    trainer.test(SyntheticModule(), datamodule=SyntheticDataModule({"a": 65, "b": 47}))
    return json.loads((tmp_path / "metrics_test.json").read_text())["tasks"]


@pytest.mark.slow
def test_ddp_two_processes_match_one(tmp_path):
    single = run_test(tmp_path / "single", devices=1)
    ddp = run_test(tmp_path / "ddp", devices=2, strategy="ddp_spawn")
    for task in ("a", "b"):
        for key in ("n", "acc", "ece", "trust", "brier", "nll", "auroc"):
            assert ddp[task][key] == pytest.approx(single[task][key], abs=1e-9), (task, key)
        # pytest 9's approx refuses nested mappings: compare each bin statistic's list.
        assert ddp[task]["bins"].keys() == single[task]["bins"].keys()
        for stat, values in single[task]["bins"].items():
            assert ddp[task]["bins"][stat] == pytest.approx(values), (task, stat)
    rows = (tmp_path / "ddp" / "predictions" / "test_a.csv").read_text().splitlines()
    assert len(rows) == 66  # a header and each of the 65 examples once
