"""The training stages of a pipeline experiment file, composed as `first-pl pipeline` composes them.

A stage's config is the trainer YAML, the data section (with `data_overrides`), the stage's
model YAML and its `overrides`, merged in that order (first_pl/pipeline/pipeline.py). Students
trained by distillation read the teacher's stored top-k, so no stage holds two models.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from first_pl.models import ModelSpec
from first_pl.pipeline.files import deep_merge, load_yaml
from first_pl.planning.memory import Workload


@dataclass(frozen=True)
class PlannedStage:
    """One training stage: where it comes from, its model, trainer and per-rank workload."""

    experiment: str
    stage: str
    spec: ModelSpec
    trainer: dict[str, Any]
    work: Workload


def experiment_files(path: str) -> list[Path]:
    """An experiment YAML, or every `*.yaml` directly in a folder (sorted)."""
    target = Path(path)
    files = sorted(target.glob("*.yaml")) if target.is_dir() else [target]
    if not files or not all(f.is_file() for f in files):
        raise FileNotFoundError(f"plan: --experiment {path} is neither a YAML file nor a folder holding some")
    return files


def _data_value(data: dict[str, Any], key: str, source: Path) -> int:
    """`data.init_args.<key>`, or the data class's default for it."""
    init = data.get("init_args") or {}
    if key in init:
        return int(init[key])
    module, _, name = data["class_path"].rpartition(".")
    default = inspect.signature(getattr(importlib.import_module(module), name)).parameters.get(key)
    if default is None or default.default is inspect.Parameter.empty:
        raise ValueError(f"plan: {source} data.init_args has no {key} and {data['class_path']} no default")
    return int(default.default)


def stages(path: Path) -> list[PlannedStage]:
    """The teacher and each distinct student of one experiment file."""
    experiment = load_yaml(path)
    missing = [key for key in ("trainer", "data", "teacher") if key not in experiment]
    if missing:
        raise ValueError(f"plan: {path} is not a pipeline experiment: it has no {', '.join(missing)}")
    trainer = load_yaml(experiment["trainer"])
    data = deep_merge(load_yaml(experiment["data"])["data"], experiment.get("data_overrides") or {})
    named = {"teacher": experiment["teacher"], **{
        f"student {name}": stage for name, stage in (experiment.get("students") or {}).items()
    }}
    planned: dict[tuple, PlannedStage] = {}
    for name, stage in named.items():
        config = deep_merge(deep_merge(trainer, {"data": data}), load_yaml(stage["config"]))
        config = deep_merge(config, stage.get("overrides") or {})
        model = (config.get("model", {}).get("init_args") or {}).get("model") or {}
        spec = ModelSpec(**model)
        work = Workload(
            batch_size=_data_value(config["data"], "batch_size", path),
            seq_len=_data_value(config["data"], "max_length", path),
        )
        key = (repr(spec), repr(config["trainer"]), work)
        if key in planned:  # students of one model and trainer differ only in their loss
            same = planned[key]
            planned[key] = replace(same, stage=f"{same.stage}, {name.removeprefix('student ')}")
        else:
            planned[key] = PlannedStage(path.stem, name, spec, config["trainer"], work)
    return list(planned.values())
