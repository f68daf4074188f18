"""`first-pl export`: turn a training checkpoint into a plain Hugging Face model folder.

The result loads with `AutoModelForCausalLM.from_pretrained` / `AutoTokenizer.from_pretrained`
anywhere (no first_pl, no Lightning) and gives the trained module's logits exactly. A sharded
checkpoint (a folder written by ModelParallelStrategy / FSDPStrategy with sharded state) is
consolidated into one file first.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from lightning.fabric.utilities.load import _METADATA_FILENAME
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from first_pl.commands.output_path import OutputPathError, check_output_path
from first_pl.models import load_tokenizer
from first_pl.modules.checkpoint import CheckpointError, load_strategy

_OPTIMIZER_KEY = re.compile(r"optimizer_\d+")
# Written into every export: `--overwrite true` replaces only a folder that holds it.
EXPORT_MARKER = "first_pl_export.json"


def consolidate(folder: Path, out_file: Path) -> Path:
    """One `.ckpt` file from a sharded checkpoint folder (weights + the rank-0 metadata file).

    ModelParallelStrategy stores the weights under `state_dict`, FSDPStrategy under `model`;
    the optimizer shards are dropped, since an export needs only the weights.
    """
    if not (folder / _METADATA_FILENAME).is_file():
        raise CheckpointError(
            f"{folder} is not a sharded Lightning checkpoint (no {_METADATA_FILENAME})"
        )
    dcp_to_torch_save(folder, out_file)
    checkpoint = torch.load(out_file, map_location="cpu", weights_only=False)
    checkpoint.update(
        torch.load(folder / _METADATA_FILENAME, map_location="cpu", weights_only=False)
    )
    if "state_dict" not in checkpoint and "model" in checkpoint:
        checkpoint["state_dict"] = checkpoint.pop("model")
    for key in [k for k in checkpoint if _OPTIMIZER_KEY.fullmatch(k)]:
        del checkpoint[key]
    torch.save(checkpoint, out_file)
    return out_file


def check_output_dir(out: Path, source: Path, overwrite: bool) -> None:
    """Refuse an output folder whose replacement would destroy anything but an earlier export.

    The working folder, a folder that holds the checkpoint (its run folder) and any folder
    without `EXPORT_MARKER` are refused even with `--overwrite true`: overwriting removes the
    whole folder, and these hold notes, data, checkpoints, configs or metrics.
    """
    check_output_path(out, "--output_dir")
    target, cwd = out.resolve(), Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise OutputPathError(
            f"--output_dir {out} is the working folder or holds it; export into a new folder"
        )
    if target == source.resolve() or target in source.resolve().parents:
        raise OutputPathError(
            f"--output_dir {out} holds the checkpoint {source}; export into a new folder"
        )
    if not out.exists():
        return
    if not overwrite:
        raise FileExistsError(
            f"--output_dir {out} already exists; pass --overwrite true to replace an earlier "
            f"export there"
        )
    if not out.is_dir():
        raise OutputPathError(f"--output_dir {out} is a file, not an export folder")
    if not (out / EXPORT_MARKER).is_file() and any(out.iterdir()):
        raise OutputPathError(
            f"--output_dir {out} was not written by first-pl export (it has no {EXPORT_MARKER}); "
            f"--overwrite true replaces only an earlier export: choose a new folder"
        )


def export(
    checkpoint: str, output_dir: str, tokenizer: str | None = None, overwrite: bool = False
) -> Path:
    """Save a checkpoint's model and tokenizer as a Hugging Face folder.

    Args:
        checkpoint: a `.ckpt` file of any first_pl strategy, or a sharded checkpoint folder.
        output_dir: the folder to write (config.json, weights, tokenizer files, and
            `first_pl_export.json`, which records the source checkpoint).
        tokenizer: tokenizer name or folder; default: the one of the checkpoint's model source
            (students share their teacher's tokenizer).
        overwrite: replace an earlier export at output_dir (never any other folder).
    """
    source, out = Path(checkpoint), Path(output_dir)
    check_output_dir(out, source, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        ckpt_file = (
            consolidate(source, Path(tmp) / "consolidated.ckpt") if source.is_dir() else source
        )
        module = load_strategy(ckpt_file)
        staging = Path(tmp) / "export"
        module.model.save_pretrained(staging)
        load_tokenizer(tokenizer or module.model_spec.name_or_path).save_pretrained(staging)
        record = {"checkpoint": str(source.resolve()), "strategy": type(module).__name__}
        (staging / EXPORT_MARKER).write_text(json.dumps(record, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)  # same file system (tmp lives beside out): a whole folder or none
    print(f"exported {type(module).__name__} ({module.model.num_parameters()} parameters) to {out}")
    return out
