"""The tiny pipeline as a `first-pl pipeline` config, on one process or two, and its stage
records (tests/distributed/test_pipeline_processes.py, tests/e2e)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import yaml
from first_pl_testing import CONFIGS, tiny_pipeline


def pipeline_config(model_dir: Path, out: Path, strategy: str | None) -> Path:
    """The tiny pipeline (one FIRST student, 8 examples a split) as a `first-pl pipeline` config."""
    pipeline = tiny_pipeline(model_dir, out, methods=("first",), sizes=(8, 8, 8), ood=False)
    config = dataclasses.asdict(pipeline)
    if strategy is not None:
        config["trainer"] = [str(CONFIGS / "trainer" / "cpu.yaml"), str(CONFIGS / "trainer" / f"{strategy}.yaml")]
        config["data_overrides"]["init_args"]["batch_size"] = 4  # x 2 processes: the same 8
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def stage_records(out: Path) -> dict[str, dict]:
    records = [json.loads(p.read_text()) for p in out.glob("*/stage.json")]
    return {r["name"]: r for r in records}
