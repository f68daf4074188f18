"""`PredictionWriter`: `first-pl predict` writes each answer with its confidence to a CSV.

Lightning's predict loop only returns the `EvalOutput`s; this writer streams them, batch by
batch, to `predictions_<task>.csv` (example_id, letter, confidence, gold, correct) in the
trainer's log dir, so a large test set never has to sit in memory. Add it on the command line:

    first-pl predict --config <run config> --ckpt_path <ckpt> \
        --trainer.callbacks+=first_pl.callbacks.prediction_writer.PredictionWriter

Under several processes every rank writes its own `predictions_<task>.rank<r>.csv` (the
distributed sampler splits the examples between them).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter

from first_pl.callbacks.evaluation_files import candidate_letters, task_name
from first_pl.fileio.run_files import safe_name

HEADER = ("example_id", "letter", "confidence", "gold", "correct")


class PredictionWriter(BasePredictionWriter):
    """Write every predicted answer and its confidence, one CSV per evaluation task.

    Args:
        output_dir: where the CSVs go (default: the trainer's log dir, else its root dir).
    """

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.started: set[Path] = set()
        self.paths: dict[str, Path] = {}

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started.clear()
        self.paths.clear()
        # log_dir is collective under DDP, so every rank asks for it here, together.
        self.root = Path(self.output_dir or trainer.log_dir or trainer.default_root_dir)

    def path(self, trainer: pl.Trainer, task: str) -> Path:
        suffix = f".rank{trainer.global_rank}" if trainer.world_size > 1 else ""
        return self.root / f"predictions_{safe_name(task)}{suffix}.csv"

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        task = task_name(trainer, dataloader_idx)
        letters = candidate_letters(trainer, task, dataloader_idx)
        path = self.path(trainer, task)
        first = path not in self.started
        self.started.add(path)
        self.paths[task] = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w" if first else "a", newline="") as handle:
            writer = csv.writer(handle)
            if first:
                writer.writerow(HEADER)
            for example_id, pred, confidence, gold, correct in zip(
                prediction["example_id"],
                prediction["pred"].tolist(),
                prediction["confidence"].tolist(),
                prediction["gold"].tolist(),
                prediction["correct"].tolist(),
                strict=True,
            ):
                letter = letters[pred] if letters is not None and pred < len(letters) else pred
                gold_label = (
                    letters[gold] if letters is not None and 0 <= gold < len(letters) else gold
                )
                writer.writerow(
                    (example_id, letter, f"{confidence:.6f}", gold_label, int(bool(correct)))
                )
