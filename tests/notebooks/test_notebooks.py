"""The analysis notebooks run top to bottom on a tiny configuration and draw their figures.

Each notebook's `parameters` cell is replaced by one pointing at the tiny model, a shared
output folder and 2-step budgets; the notebooks run in order on that folder, so the pipeline
stages the first one trains are cached for the others (as on the real default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from first_pl_testing import BIGBENCH
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
METHODS = ("finetune", "distill", "ls_distill", "first")


def tiny_overrides(model_dir: Path) -> dict[str, Any]:
    """Pipeline fields for the tiny model: 2 steps per model, a few dozen examples."""
    model = {
        "model": {
            "init_args": {
                "model": {"name_or_path": str(model_dir), "keep_every": None, "keep_layers": None}
            }
        }
    }
    return {
        "trainer": "configs/trainer/cpu.yaml",
        "data_overrides": {
            "init_args": {
                "tokenizer": str(model_dir),
                "batch_size": 8,
                "train_task": {
                    "init_args": {"train_size": 24, "validation_size": 16, "test_size": 16}
                },
            }
        },
        # the main job's out-of-domain tasks (its ood_templates name them), 8 examples each
        "ood_tasks": [
            {
                "class_path": "first_pl.tasks.BigBench",
                "init_args": {"path": str(BIGBENCH / name), "limit": 8},
            }
            for name in ("social_iqa", "strategyqa", "physics")
        ],
        "teacher": {"max_steps": 2, "overrides": model},
        "students": {m: {"max_steps": 2, "overrides": model} for m in METHODS},
        "extract_batch_size": 8,
        "threads": None,
        "prefix_layers": 1,  # the main job's shared frozen prefix, on the 4-layer tiny model
    }


def execute(name: str, parameters: dict[str, Any]) -> nbformat.NotebookNode:
    """Run a notebook with its parameters cell replaced; return it with its outputs."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert nb.cells.index(cell) <= 1, "the parameters cell must be at the top"
    cell.source = "\n".join(f"{key} = {value!r}" for key, value in parameters.items())
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    return nb


def images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


@pytest.fixture(scope="module")
def params(tiny_model_dir, tmp_path_factory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("notebook_runs")
    return {
        "config": "configs/experiments/offline_default.yaml",
        "output_dir": str(out),
        "overrides": tiny_overrides(tiny_model_dir),
    }


def test_01_concentrated_knowledge(params):
    nb = execute("01_concentrated_knowledge", {**params, "max_k": 10, "max_positions": 16})
    figures = Path(params["output_dir"]) / "notebooks" / "01_concentrated_knowledge"
    assert (figures / "coverage.png").stat().st_size > 0
    assert len((figures / "coverage.csv").read_text().splitlines()) == 11
    assert images(nb) == 1


def test_02_tuning_induced_miscalibration(params):
    nb = execute("02_tuning_induced_miscalibration", params)
    figures = Path(params["output_dir"]) / "notebooks" / "02_tuning_induced_miscalibration"
    for model in ("fine-tuned_teacher", "pretrained"):
        assert (figures / model / "rank_calibration.png").stat().st_size > 0
        assert len((figures / model / "rank_calibration.csv").read_text().splitlines()) == 6
    assert images(nb) == 2


def test_03_reliability_report(params):
    nb = execute("03_reliability_report", params)
    figures = Path(params["output_dir"]) / "notebooks" / "03_reliability_report"
    report = (figures / "report.md").read_text()
    for method in ("teacher", *METHODS):
        assert f"| {method} |" in report
    tasks = ("generated", "social_iqa", "strategyqa", "physics")
    assert {p.name for p in figures.glob("reliability_*.png")} == {
        f"reliability_{task}.png" for task in tasks
    }
    assert images(nb) == len(tasks)  # one diagram per task


def test_04_sweep(params):
    nb = execute("04_sweep", {**params, "temperatures": [0.2, 1.0], "deltas": [0.0, 0.2]})
    sweep = Path(params["output_dir"]) / "sweep"
    assert (sweep / "figure5.png").stat().st_size > 10_000
    # a header, then one row per run (2 temperatures + 2 deltas) and task (in domain + 3 OOD)
    assert len((sweep / "sweep_results.csv").read_text().splitlines()) == 1 + 4 * 4
    assert images(nb) == 1
