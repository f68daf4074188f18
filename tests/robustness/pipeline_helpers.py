"""A small pipeline on the tiny model (teacher, stores, calibration, one FIRST student, report)."""

from __future__ import annotations

from pathlib import Path

from first_pl.pipeline.offline import Pipeline, TrainStage

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
BIGBENCH = REPO.parent / "shared" / "data" / "bigbench"


def tiny_pipeline(model_dir: Path, out: Path) -> Pipeline:
    model = {
        "model": {
            "init_args": {
                "model": {"name_or_path": str(model_dir), "keep_every": None, "keep_layers": None}
            }
        }
    }
    return Pipeline(
        output_dir=str(out),
        trainer=str(CONFIGS / "trainer" / "cpu.yaml"),
        data=str(CONFIGS / "data" / "generated.yaml"),
        data_overrides={
            "init_args": {
                "tokenizer": str(model_dir),
                "batch_size": 8,
                "train_task": {
                    "init_args": {"train_size": 16, "validation_size": 8, "test_size": 8}
                },
            }
        },
        teacher=TrainStage(str(CONFIGS / "model" / "finetune_smollm2.yaml"), 2, model),
        students={"first": TrainStage(str(CONFIGS / "model" / "first.yaml"), 2, model)},
        extract_batch_size=8,
    )


def tiny_pipeline_code(model_dir: Path, out: Path) -> str:
    """Python source that runs `tiny_pipeline` (for a subprocess)."""
    return (
        "from pipeline_helpers import tiny_pipeline\n"
        f"tiny_pipeline(pathlib.Path({str(model_dir)!r}), pathlib.Path({str(out)!r})).run()\n"
    )
