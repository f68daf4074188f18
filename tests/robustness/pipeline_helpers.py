"""A small pipeline on the tiny model (teacher, stores, calibration, one FIRST student, report)."""

from __future__ import annotations

from pathlib import Path

from first_pl_testing import tiny_pipeline as shared_tiny_pipeline

from first_pl.pipeline.pipeline import Pipeline


def tiny_pipeline(model_dir: Path, out: Path) -> Pipeline:
    """Teacher, stores, calibration and one FIRST student, no out-of-domain task."""
    return shared_tiny_pipeline(model_dir, out, methods=("first",), sizes=(16, 8, 8), ood=False)


def tiny_pipeline_code(model_dir: Path, out: Path) -> str:
    """Python source that runs `tiny_pipeline` (for a subprocess)."""
    return (
        "from pipeline_helpers import tiny_pipeline\n"
        f"tiny_pipeline(pathlib.Path({str(model_dir)!r}), pathlib.Path({str(out)!r})).run()\n"
    )
