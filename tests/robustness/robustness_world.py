"""The small world of the robustness tests (built once per session by the `world` fixture).

`world` holds a data config, a FineTune run (checkpoint + config.yaml), the train and validation
teacher stores extracted from that checkpoint, and a calibration.json: the good inputs each
bad-input case starts from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
TASK = {"train_size": 12, "validation_size": 8, "test_size": 8, "label_noise": 0.2, "seed": 5}


@dataclass
class World:
    model_dir: Path
    data_yaml: Path
    distill_yaml: Path
    run_dir: Path
    checkpoint: Path
    train_store: Path
    validation_store: Path
    calibration: Path

    def fit_args(
        self, run_dir: Path, *extra: str, model: str = "finetune_smollm2.yaml",
        data: Path | None = None, command: str = "fit",
    ) -> list[str]:  # fmt: skip
        """`first-pl fit` arguments for a tiny run into `run_dir` (no progress bar, no summary)."""
        return [
            command,
            "--config", str(CONFIGS / "trainer" / "cpu.yaml"),
            "--config", str(data or self.data_yaml),
            "--config", str(CONFIGS / "model" / model),
            # the tiny model, all its layers (whatever layer drop the model config asks for)
            "--model.init_args.model", json.dumps({"name_or_path": str(self.model_dir), "keep_every": None, "keep_layers": None}),
            "--trainer.default_root_dir", str(run_dir),
            "--trainer.logger.init_args.save_dir", str(run_dir),
            "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false",
            "--trainer.limit_val_batches", "0",
            "--evaluation.n_resamples", "20",
            *extra,
        ]  # fmt: skip

    def extract_args(self, output: Path, *extra: str, split: str = "train") -> list[str]:
        return [
            "extract", "--config", str(self.data_yaml), "--teacher", str(self.checkpoint),
            "--output", str(output), "--split", split, "--batch_size", "4",
            "--probs_dtype", "float32", "--progress", "false", *extra,
        ]  # fmt: skip


def data_section(model_dir: Path, **overrides) -> dict:
    return {
        "class_path": "first_pl.data.qa_datamodule.QADataModule",
        "init_args": {
            "tokenizer": str(model_dir),
            "train_task": {"class_path": "first_pl.tasks.GeneratedMC", "init_args": dict(TASK)},
            "batch_size": 4,
            "eval_batch_size": 8,
            "max_length": 64,
            "shuffle": False,
            **overrides,
        },
    }
