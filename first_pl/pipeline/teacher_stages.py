"""The stages that read the fine-tuned teacher: its top-k stores, the calibration of c, and
the analysis figures (the paper's figures 2 and 3). Shared by every student and every seed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from first_pl.fileio.run_files import CALIBRATION_FILE, COVERAGE_STEM, RANK_CALIBRATION_STEM
from first_pl.pipeline.files import write_yaml
from first_pl.pipeline.launch import run_first_pl
from first_pl.pipeline.stages import StageResult, StageRunner

if TYPE_CHECKING:
    from first_pl.pipeline.offline import Pipeline


def extraction(
    data_section: dict[str, Any], teacher: StageResult, split: str, batch_size: int,
    processes: int, **options: Any,
) -> Callable[[Path], dict[str, Any]]:  # fmt: skip
    """The body of a stage that extracts the teacher's top-k on `split` into
    `<stage>/teacher_<split>.h5` on `processes` processes (`options`: further `first-pl extract`
    options, such as k). The store does not depend on the process count (rank blocks are merged
    in order), so neither does the stage's key."""

    def body(folder: Path) -> dict[str, Any]:
        output = folder / f"teacher_{split}.h5"
        settings = {
            "data": data_section,
            "teacher": teacher.outputs["checkpoint"],
            "output": str(output),
            "split": split,
            **options,
            "batch_size": batch_size,
        }
        config = write_yaml(folder / "extract.yaml", settings)
        run_first_pl(["extract", "--config", str(config)], processes, folder / "extract.log")
        return {"store": str(output)}

    return body


def knowledge_stages(
    pipeline: Pipeline, runner: StageRunner, data_section: dict[str, Any], teacher: StageResult
) -> dict[str, StageResult]:
    """extract-train, extract-validation, calibrate and analysis, run (or reused) in order."""
    from first_pl.cli import main

    stages: dict[str, StageResult] = {}
    for split in ("train", "validation"):
        body = extraction(
            data_section, teacher, split, pipeline.extract_batch_size, pipeline.processes()
        )
        settings = {"data": data_section, "split": split, "batch": pipeline.extract_batch_size}
        stages[f"extract-{split}"] = runner.run(f"extract-{split}", settings, body, [teacher])
    validation_store = stages["extract-validation"].outputs["store"]

    def calibrate_body(folder: Path) -> dict[str, Any]:
        main(
            [
                "calibrate",
                "--store",
                validation_store,
                "--output_dir",
                str(folder),
                "--objective",
                pipeline.calibrate_objective,
                "--answer_only",
                str(pipeline.calibrate_answer_only).lower(),
            ]
        )
        result = json.loads((folder / CALIBRATION_FILE).read_text())
        return {
            "calibration": str(folder / CALIBRATION_FILE),
            "temperature": result["temperature"],
        }

    stages["calibrate"] = runner.run(
        "calibrate",
        {"objective": pipeline.calibrate_objective, "answer_only": pipeline.calibrate_answer_only},
        calibrate_body,
        [stages["extract-validation"]],
    )

    def analysis_body(folder: Path) -> dict[str, Any]:
        """Figures 2 and 3 of the paper for this teacher, on the validation split."""
        settings = {
            "data": data_section,
            "teacher": teacher.outputs["checkpoint"],
            "output_dir": str(folder),
            "split": "validation",
            "max_positions": pipeline.coverage_positions,
        }
        main(["coverage", "--config", str(write_yaml(folder / "coverage.yaml", settings))])
        main(["rank-calibration", "--store", validation_store, "--output_dir", str(folder)])
        return {
            "coverage": str(folder / f"{COVERAGE_STEM}.json"),
            "rank_calibration": str(folder / f"{RANK_CALIBRATION_STEM}.json"),
        }

    stages["analysis"] = runner.run(
        "analysis",
        {"positions": pipeline.coverage_positions},
        analysis_body,
        [teacher, stages["extract-validation"]],
    )
    return stages
