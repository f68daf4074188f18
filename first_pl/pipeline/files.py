"""Config files of the pipeline: reading and merging YAML, and the files a stage leaves.

Kept apart from `pipeline.py` (the stages and their order) so the sweep and tests use the same
merge rules.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml


class ConfigFileError(ValueError):
    """A config file the pipeline (or `plan`) cannot read as a YAML mapping; names the file."""


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping of options from `path`, refused by name when it is none."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pipeline config refers to {path}, which does not exist")
    try:
        value = yaml.safe_load(path.read_text())
    except UnicodeDecodeError:
        raise ConfigFileError(f"config {path} is not a text file (not UTF-8); expected YAML") from None
    except yaml.YAMLError as err:
        mark, problem = getattr(err, "problem_mark", None), getattr(err, "problem", None) or err
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigFileError(f"config {path} is not valid YAML{where}: {problem}") from None
    if value is not None and not isinstance(value, dict):
        raise ConfigFileError(
            f"config {path} holds a {type(value).__name__}; expected a mapping of options"
        )
    return value or {}


def load_merged(paths: str | list[str]) -> dict[str, Any]:
    """One YAML file, or several merged in order (as `--config a.yaml --config b.yaml` does)."""
    merged: dict[str, Any] = {}
    for path in [paths] if isinstance(paths, str) else paths:
        merged = deep_merge(merged, load_yaml(path))
    return merged


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


def single_file_checkpoint(checkpoint: Path, folder: Path) -> Path:
    """The checkpoint as one `.ckpt` file: a sharded folder (FSDP2) is consolidated into
    `<folder>/consolidated.ckpt`, since extraction and the analysis load one file."""
    if not checkpoint.is_dir():
        return checkpoint
    from first_pl.methods.loading import consolidate

    return consolidate(checkpoint, folder / "consolidated.ckpt")


def run_dir_overrides(folder: Path, max_steps: int) -> dict[str, Any]:
    """Trainer settings every training stage shares: its folder, its budget, no mid-run eval."""
    return {
        "trainer": {
            "max_steps": max_steps,
            "max_epochs": -1,
            "limit_val_batches": 0,
            "num_sanity_val_steps": 0,
            "default_root_dir": str(folder),
            "logger": {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(folder), "name": "", "version": ""},
            },
        }
    }


def validation_overrides(interval: int, limit: int | float) -> dict[str, Any]:
    """Validate every `interval` optimizer steps, counted across epochs, and at the last step
    (`LastStepValidation`), so the curve ends at the model that is tested."""
    return {
        "trainer": {
            "val_check_interval": interval,
            "check_val_every_n_epoch": None,
            "limit_val_batches": limit,
        }
    }


def instantiate_task(spec: Any, where: str = "task"):
    """The `Task` a config's task entry (a class_path mapping or a class name) builds; a spec
    that builds none is refused naming `where` (the option that gave it)."""
    from first_pl.tasks.base import Task

    return instantiate(Task, spec, where, "a task")


def instantiate(base: type, spec: Any, where: str, what: str):
    """The subclass of `base` a config entry (a class_path mapping or a class name) builds, with
    the class_path mappings in its init_args built too, as the `first-pl` commands build them; a
    spec that builds none is refused as not `what`, naming `where`."""
    from argparse import ArgumentError

    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(base, "value")
    try:
        parsed = parser.parse_object({"value": spec})
    except ArgumentError as err:
        raise ConfigFileError(f"{where} {spec!r} is not {what}: {_first_problem(err)}") from None
    return parser.instantiate_classes(parsed).value


def _first_problem(err: Exception) -> str:
    """jsonargparse's reason in one line ("Problem with given class_path 'x': Option 'y' is not
    accepted"), without the lines on the Union it tried."""
    lines = [line.strip(" -") for line in str(err).splitlines()]
    for i, line in enumerate(lines[:-1]):
        if line.startswith("Problem with given class_path"):
            return f"{line} {lines[i + 1]}"
    return " ".join(lines)


def write_splits(data_section: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Write the task's examples to JSONL so the exact data of a run can be read and shared."""
    task = instantiate_task(data_section["init_args"]["train_task"])
    counts = {}
    for split in ("train", "validation", "test"):
        examples = task.load(split)
        with (folder / f"{split}.jsonl").open("w") as f:
            for example in examples:
                f.write(json.dumps(asdict(example)) + "\n")
        counts[split] = len(examples)
    return {"counts": counts}
