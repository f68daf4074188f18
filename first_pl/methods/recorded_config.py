"""The config a checkpoint records, as defaults of `first-pl validate / test / predict`.

A checkpoint saved by `first-pl fit` records its method and model (`hyper_parameters`) and
the data config it was trained on (`first_pl.data.record`). `first-pl test --ckpt_path X` needs
neither the run's `config.yaml` nor a data config: both become the subcommand's defaults, so
every explicit `--config` / `--data.*` / `--model.*` still wins over them, key by key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from first_pl.data.record import DATA_KEY
from first_pl.methods.base import recorded_method
from first_pl.methods.checkpoint import CheckpointError

EVAL_SUBCOMMANDS = ("validate", "test", "predict")


def ckpt_path_argument(args: list[str]) -> str | None:
    """The last `--ckpt_path X` / `--ckpt_path=X` on the command line (the one that wins)."""
    found = None
    for index, arg in enumerate(args):
        if arg == "--ckpt_path" and index + 1 < len(args):
            found = args[index + 1]
        elif arg.startswith("--ckpt_path="):
            found = arg.split("=", 1)[1]
    return found


def gives_data(args: list[str]) -> bool:
    """Whether the command line may give the data itself (a config file or a `--data` option)."""
    return any(arg.startswith(("--config", "-c", "--data")) for arg in args[1:])


def checkpoint_defaults(args: list[str]) -> tuple[str, dict[str, Any]] | None:
    """`(subcommand, {"model": ..., "data": ...})` from the checkpoint an evaluation names.

    None for other subcommands, a `--ckpt_path` that is not a file (sharded folders, `last`),
    or a file that cannot be read (`FirstCLI._parse_ckpt_path` then names it and the reason).
    A checkpoint without a data record, given no data on the command line, is refused here
    with what to give instead of jsonargparse's "required: data".
    """
    if not args or args[0] not in EVAL_SUBCOMMANDS:
        return None
    path = ckpt_path_argument(args)
    if path is None or not Path(path).is_file():
        return None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - reported with its reason when Lightning reads it
        return None
    defaults: dict[str, Any] = {}
    hparams = checkpoint.get("hyper_parameters") or {}
    method = recorded_method(checkpoint)
    if method is not None:
        init_args = {k: v for k, v in hparams.items() if not k.startswith("_")}
        defaults["model"] = {"class_path": method, "init_args": init_args}
    config = (checkpoint.get(DATA_KEY) or {}).get("config")
    if config:
        defaults["data"] = config
    elif not gives_data(args):
        raise CheckpointError(
            f"--ckpt_path {path} records no data config (`first-pl fit` records it in the "
            f"checkpoints it saves); give the data to {args[0]} on: --config <run folder>/"
            "config.yaml, or --data"
        )
    return args[0], defaults
