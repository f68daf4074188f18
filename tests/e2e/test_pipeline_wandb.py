"""`logger: wandb`: the tiny pipeline's offline W&B run folders, listed (runs, keys, images).

Each fit and each test of a stage is its own W&B run in the experiment's group, next to the CSV
files the report reads (CSV stays the default: `logger: csv`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from first_pl_testing import tiny_pipeline
from wandb_run_files import history_keys, run_record

from first_pl.pipeline.pipeline import Pipeline
from first_pl.pipeline.stage_logging import report_tables
from first_pl.report.blocks import Heading, Paragraph, Report, Table

FIGURES = ("acc", "ece", "trust")


def test_unknown_logger_is_refused_by_name():
    with pytest.raises(ValueError, match=r"pipeline logger must be one of \['csv', 'wandb'\], got 'tensorboard'"):
        Pipeline(logger="tensorboard")


@pytest.mark.slow
def test_tiny_pipeline_logs_each_stage_to_its_own_offline_wandb_run(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "experiment"
    pipeline = tiny_pipeline(tiny_model_dir, out, methods=("first",), sizes=(8, 8, 8), ood=False)
    pipeline.logger, pipeline.val_check_interval = "wandb", 1
    report = pipeline.run()
    assert "| first |" in report.read_text()  # the report still reads the CSV files
    runs = {}
    for path in out.glob("*/**/wandb/offline-run-*/run-*.wandb"):
        record = run_record(path)
        runs[record.display_name] = (record.run_group, record.job_type, path.parent, history_keys(path))
    assert sorted(runs) == ["report", "student-first", "student-first-test", "teacher", "teacher-test", "zero-shot-test"]
    assert {group for group, *_ in runs.values()} == {"experiment"}
    _, job, folder, keys = runs.pop("report")  # the report table, its figures, the calibration curve
    assert job == "report" and {"report/test_results/_type", "report/html/_type"} <= keys
    assert {"figures/calibration_curve/_type", "figures/reliability_generated/_type"} <= keys
    assert {p.name.split("_")[0] for p in (folder / "files" / "media" / "images" / "figures").glob("*.png")} >= {"calibration", "reliability"}
    for name, (_, job, folder, keys) in runs.items():
        assert job == ("test" if name.endswith("-test") else "fit")
        split = "test" if job == "test" else "val"
        assert {f"{split}/generated/{f}" for f in FIGURES} <= keys, name
        assert f"{split}/generated/reliability/_type" in keys and f"{split}/generated/bins/_type" in keys
        assert list((folder / "files" / "media" / "images" / split / "generated").glob("reliability_*.png"))
        if job == "fit":  # the training curve
            assert "train/loss" in keys
    (teacher,) = out.glob("teacher-*")
    assert (teacher / "metrics.csv").is_file() and (teacher / "test" / "metrics_test.csv").is_file()


def test_report_tables_are_named_by_the_heading_above_them():
    first, second = Table(["method", "Acc"], [["first", "50.0"]]), Table(["a"], [["1"]])
    paired = Table(["method", "Acc"], [["first", "+1.0"]])
    report = Report("T", [Heading("Test results"), Paragraph(["note"]), first, second,
                          Heading("Paired comparison with finetune"), Paragraph([]), paired], Path("out"))  # fmt: skip
    assert report_tables(report) == {"test_results": first, "test_results-2": second,
                                     "paired_comparison_with_finetune": paired}  # fmt: skip
