"""Config files of the pipeline: reading and merging YAML, and the files a stage leaves.

Kept apart from `offline.py` (the stages and their order) so the sweep and tests use the same
merge rules.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pipeline config refers to {path}, which does not exist")
    return yaml.safe_load(path.read_text()) or {}


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`update` over `base`, recursively for mappings (lists and scalars are replaced)."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def write_yaml(path: Path, value: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(value, sort_keys=False))
    return path


def last_checkpoint(folder: Path) -> Path:
    found = sorted((folder / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"training stage {folder} wrote no checkpoint")
    return found[-1]


def write_splits(data_section: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Write the task's examples to JSONL so the exact data of a run can be read and shared."""
    from jsonargparse import ArgumentParser

    from first_pl.tasks.base import Task

    parser = ArgumentParser()
    parser.add_subclass_arguments(Task, "task")
    task = parser.instantiate_classes(
        parser.parse_object({"task": data_section["init_args"]["train_task"]})
    ).task
    counts = {}
    for split in ("train", "validation", "test"):
        examples = task.load(split)
        with (folder / f"{split}.jsonl").open("w") as f:
            for example in examples:
                f.write(json.dumps(asdict(example)) + "\n")
        counts[split] = len(examples)
    return {"counts": counts}
