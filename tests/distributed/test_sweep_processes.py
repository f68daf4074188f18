"""`first-pl sweep` with a 2-process trainer (DDP over gloo): its student trains and tests as a
torchrun group (first_pl/runner.py), like the pipeline's stages in test_pipeline_processes.py."""

from __future__ import annotations

import re

import pytest
import yaml
from two_process_pipeline import pipeline_config, stage_records

from first_pl.cli import main


@pytest.mark.slow
def test_sweep_on_two_processes(tiny_model_dir, tmp_path, capsys):
    """A one-point sweep with the DDP trainer: its student trains and tests on 2 processes."""
    out = tmp_path / "runs"
    config = yaml.safe_load(pipeline_config(tiny_model_dir, out, "ddp").read_text())
    config.update(temperatures=[0.5], deltas=[])
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    capsys.readouterr()
    main(["sweep", "--config", str(path)])
    log = capsys.readouterr().out
    (point,) = [r for name, r in stage_records(out).items() if name.startswith("sweep-first")]
    assert set(point["outputs"]["metrics"]["generated"]) == {"n", "acc", "ece", "trust"}
    assert re.search(r"sweep-first-temperature0\.5: running in .*\n  fit on 2 processes", log)
