"""CalibrationEvaluation in a real Trainer: logged keys, files, values, empty tasks."""

from __future__ import annotations

import csv
import json

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from synthetic_eval import SyntheticDataModule, SyntheticModule

from first_pl.callbacks import CalibrationEvaluation
from first_pl.metrics.functional import expected_calibration_error


def make_trainer(tmp_path, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        default_root_dir=tmp_path, accelerator="cpu", devices=1, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False,
        callbacks=[CalibrationEvaluation(n_resamples=200)], **kwargs,
    )  # fmt: skip


def read_csv(path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def reference(task) -> dict[str, float]:
    probs, mask, gold = task.probs, task.mask, task.gold
    pred = probs.masked_fill(~mask, -1).argmax(-1)
    conf = probs.gather(1, pred[:, None])[:, 0]
    correct = pred == gold
    acc = correct.double().mean().item()
    ece = expected_calibration_error(conf, correct).item()
    return {"acc": 100 * acc, "ece": 100 * ece, "trust": 100 * (acc - ece)}


def test_fit_and_test_log_and_write_everything(tmp_path):
    dm = SyntheticDataModule({"easy": 150, "hard/x": 70})
    trainer = make_trainer(
        tmp_path, max_epochs=2, logger=CSVLogger(tmp_path), limit_train_batches=2
    )
    trainer.fit(SyntheticModule(), datamodule=dm)
    logged = trainer.callback_metrics
    for task in ("easy", "hard/x"):
        for key in ("acc", "ece", "trust", "brier", "nll"):
            assert f"val/{task}/{key}" in logged
    ref = reference(dm.tasks[0])
    for key in ("acc", "ece", "trust"):
        assert logged[f"val/easy/{key}"].item() == pytest.approx(ref[key], abs=1e-4)

    trainer.test(SyntheticModule(), datamodule=dm)
    assert "test/easy/ece" in trainer.callback_metrics
    log_dir = tmp_path / "lightning_logs" / "version_0"
    rows = read_csv(log_dir / "predictions" / "test_easy.csv")
    assert len(rows) == 150
    assert rows[0].keys() == {"example_id", "pred", "gold", "confidence", "correct", "truncated_tokens"}
    assert {r["pred"] for r in rows} <= set("ABC") and rows[3]["example_id"] == "easy-3"
    assert sum(int(r["correct"]) for r in rows) / 150 * 100 == pytest.approx(ref["acc"])
    for split in ("val", "test"):
        for stem in ("easy", "hard_x"):
            assert (log_dir / "reliability" / f"{split}_{stem}.png").stat().st_size > 10_000
        report = json.loads((log_dir / f"metrics_{split}.json").read_text())
        entry = report["tasks"]["easy"]
        assert entry["n"] == 150 and entry["ece"] == pytest.approx(ref["ece"], abs=1e-4)
        for key in ("acc", "ece", "trust"):
            ci = entry["ci"][key]
            assert ci["point"] == pytest.approx(entry[key], abs=1e-4)
            assert ci["low"] <= ci["high"]
        assert sum(entry["bins"]["count"]) == 150 and 0 <= entry["auroc"] <= 1
    metrics_csv = (log_dir / "metrics.csv").read_text()
    assert "val/easy/trust" in metrics_csv and "test/hard/x/nll" in metrics_csv


def test_empty_task_logs_nothing_and_warns_once(tmp_path):
    dm = SyntheticDataModule({"full": 40, "empty": 0})
    trainer = make_trainer(tmp_path, logger=CSVLogger(tmp_path))
    with pytest.warns(UserWarning, match="test/empty is empty") as record:
        trainer.test(SyntheticModule(), datamodule=dm)
        trainer.test(SyntheticModule(), datamodule=dm)
    assert sum("test/empty is empty" in str(w.message) for w in record) == 1
    assert "test/full/acc" in trainer.callback_metrics
    assert not any(k.startswith("test/empty") for k in trainer.callback_metrics)


def test_without_datamodule_names_tasks_by_index_and_letters_fall_back(tmp_path):
    dm = SyntheticDataModule({"a": 20})
    trainer = make_trainer(tmp_path, logger=False)
    trainer.test(SyntheticModule(), dataloaders=dm.test_dataloader())
    assert "test/task0/acc" in trainer.callback_metrics
    rows = read_csv(tmp_path / "predictions" / "test_task0.csv")
    assert {r["pred"] for r in rows} <= {"0", "1", "2"}


def test_letters_per_task_mapping(tmp_path):
    dm = SyntheticDataModule({"a": 20}, letters={"a": ["x", "y", "z"]})
    trainer = make_trainer(tmp_path, logger=False)
    trainer.test(SyntheticModule(), datamodule=dm)
    rows = read_csv(tmp_path / "predictions" / "test_a.csv")
    assert {r["gold"] for r in rows} <= {"x", "y", "z"}


def test_step_without_eval_output_warns(tmp_path):
    class Silent(SyntheticModule):
        def test_step(self, batch, batch_idx, dataloader_idx=0):
            return None

    trainer = make_trainer(tmp_path, logger=False)
    with pytest.warns(UserWarning, match="did not return an EvalOutput"):
        trainer.test(Silent(), datamodule=SyntheticDataModule({"a": 20}))
    assert not trainer.callback_metrics


def test_invalid_options_raise():
    with pytest.raises(ValueError, match="n_bins"):
        CalibrationEvaluation(n_bins=0)
    with pytest.raises(ValueError, match="confidence"):
        CalibrationEvaluation(confidence="x")


def test_renormalised_confidence_changes_ece(tmp_path):
    dm = SyntheticDataModule({"a": 60})
    full, renorm = (
        CalibrationEvaluation(write_files=False),
        CalibrationEvaluation(confidence="renormalised", write_files=False),
    )
    results = []
    for cb in (full, renorm):
        trainer = pl.Trainer(
            default_root_dir=tmp_path, logger=False, callbacks=[cb], enable_progress_bar=False
        )
        trainer.test(SyntheticModule(), datamodule=dm)
        results.append(trainer.callback_metrics["test/a/ece"].item())
    assert results[0] != pytest.approx(results[1])
    assert not (tmp_path / "predictions").exists()
    assert torch.isfinite(torch.tensor(results)).all()
