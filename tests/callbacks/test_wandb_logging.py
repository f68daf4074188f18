"""W&B: the offline-aware logger, its config, and a real offline run read back from disk."""

from __future__ import annotations

import importlib
from pathlib import Path

import lightning.pytorch as pl
import pytest
import yaml
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from synthetic_eval import SyntheticDataModule, SyntheticModule
from wandb_run_files import wandb_records

from first_pl.callbacks import CalibrationEvaluation, OfflineAwareWandbLogger

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "logger"


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for name in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


def test_offline_without_credentials_says_so_once(no_credentials, tmp_path, capsys):
    logger = OfflineAwareWandbLogger(method="FIRST", task="csqa", seed=2, save_dir=str(tmp_path))
    assert logger._offline
    assert logger._wandb_init["name"] == "FIRST-csqa-seed2"
    assert logger._wandb_init["group"] == "FIRST-csqa"
    assert logger._wandb_init["tags"] == ["FIRST", "csqa", "seed2"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "offline" in err[0]


def test_credentials_or_explicit_mode_are_respected(no_credentials, monkeypatch, tmp_path, capsys):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert not OfflineAwareWandbLogger(save_dir=str(tmp_path))._offline
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert not OfflineAwareWandbLogger(save_dir=str(tmp_path))._offline
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("name", "cls"), [("wandb.yaml", WandbLogger), ("csv.yaml", CSVLogger)])
def test_logger_configs_instantiate(name, cls, no_credentials, tmp_path):
    spec = yaml.safe_load((CONFIGS / name).read_text())["trainer"]["logger"]
    module, _, attr = spec["class_path"].rpartition(".")
    logger = getattr(importlib.import_module(module), attr)(
        **{**spec["init_args"], "save_dir": str(tmp_path)}
    )
    assert isinstance(logger, cls)


def test_offline_run_has_metrics_media_and_artifact(tmp_path, monkeypatch):
    import wandb

    monkeypatch.chdir(tmp_path)
    logger = OfflineAwareWandbLogger(
        method="Distill", task="easy", seed=0, save_dir=str(tmp_path), offline=True
    )
    trainer = pl.Trainer(
        default_root_dir=tmp_path, logger=logger, callbacks=[CalibrationEvaluation(n_resamples=100)],
        max_epochs=1, limit_train_batches=2, enable_progress_bar=False, enable_checkpointing=False,
    )  # fmt: skip
    try:
        trainer.fit(SyntheticModule(), datamodule=SyntheticDataModule({"easy": 50}))
    finally:
        wandb.finish()
    [run_dir] = (tmp_path / "wandb").glob("offline-run-*")
    history, artifacts, runs = set(), {}, []
    for record in wandb_records(next(run_dir.glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history |= {item.key or "/".join(item.nested_key) for item in record.history.item}
        elif kind == "artifact":
            artifacts[record.artifact.type] = [m.path for m in record.artifact.manifest.contents]
        elif kind == "run":
            runs.append(record.run)
    assert {f"val/easy/{k}" for k in ("acc", "ece", "trust", "brier", "nll")} <= history
    assert {
        "val/easy/reliability/path",
        "val/easy/bins/path",
        "val/easy/bins_accuracy_table/path",
    } <= history
    assert artifacts["predictions"] == ["val_easy.csv"]
    assert runs[0].display_name == "Distill-easy-seed0" and runs[0].run_group == "Distill-easy"
    images = list((run_dir / "files" / "media" / "images").rglob("*.png"))
    assert len(images) == 1 and images[0].stat().st_size > 10_000
