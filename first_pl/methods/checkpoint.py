"""Load any strategy's Lightning checkpoint back into a module (for extraction, export, asking).

A checkpoint records its strategy class (`StudentModule.on_save_checkpoint`) and its init
arguments (`save_hyperparameters`), so it can be rebuilt without the config that trained it.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from lightning.pytorch.utilities.model_registry import _is_registry

from first_pl.data.record import DATA_KEY
from first_pl.methods.base import STRATEGY_KEY, StudentModule


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or not a first_pl strategy's."""


# `--ckpt_path` values Lightning resolves itself instead of reading a path.
LIGHTNING_CKPT_NAMES = ("last", "best", "hpc")


def check_ckpt_path(ckpt_path: str | Path | None) -> None:
    """Refuse a `--ckpt_path` that names no file or folder (Lightning's own error is a traceback
    from inside the trainer); a sharded checkpoint is a folder, so any existing path passes."""
    if ckpt_path is None or str(ckpt_path) in LIGHTNING_CKPT_NAMES or _is_registry(ckpt_path):
        return
    if not Path(ckpt_path).exists():
        raise CheckpointError(f"--ckpt_path {ckpt_path} does not exist")


def strategy_class(path: str) -> type[StudentModule]:
    module_name, _, class_name = path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, StudentModule)):
        raise CheckpointError(f"{path!r} is not a first_pl strategy class")
    return cls


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (a sharded checkpoint folder must be consolidated first)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several types for a damaged file
        raise CheckpointError(f"checkpoint {path} cannot be read: {err}") from err
    if STRATEGY_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} was not written by a first_pl strategy (no {STRATEGY_KEY!r} entry)")
    return checkpoint


def load_strategy(path: str | Path, expect: type[StudentModule] | None = None) -> StudentModule:
    """Rebuild the module a checkpoint came from, with its trained weights, in eval mode."""
    checkpoint = read_checkpoint(path)
    cls = strategy_class(checkpoint[STRATEGY_KEY])
    if expect is not None and not issubclass(cls, expect):
        raise CheckpointError(f"checkpoint {path} holds a {cls.__name__}; expected a {expect.__name__}")
    # LightningCLI adds private keys such as `_class_path` to the saved hyper-parameters.
    init_args = {k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if not k.startswith("_")}
    module = cls(**init_args)
    module.configure_model()
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(
            f"checkpoint {path} does not fit the model its hyper-parameters describe: {err}"
        ) from err
    module.data_record = checkpoint.get(DATA_KEY)
    return module.eval()
