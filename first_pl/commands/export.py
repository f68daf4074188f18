"""`first-pl export`: turn a training checkpoint into a plain Hugging Face model folder.

The result loads with `AutoModelForCausalLM.from_pretrained` / `AutoTokenizer.from_pretrained`
anywhere (no first_pl, no Lightning) and gives the trained module's logits exactly. A sharded
checkpoint (a folder written by ModelParallelStrategy / FSDPStrategy with sharded state) is
consolidated into one file first.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from lightning.fabric.utilities.load import _METADATA_FILENAME
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from first_pl.models import load_tokenizer
from first_pl.modules.checkpoint import CheckpointError, load_strategy

_OPTIMIZER_KEY = re.compile(r"optimizer_\d+")


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


def export(
    checkpoint: str, output_dir: str, tokenizer: str | None = None, overwrite: bool = False
) -> Path:
    """Save a checkpoint's model and tokenizer as a Hugging Face folder.

    Args:
        checkpoint: a `.ckpt` file of any first_pl strategy, or a sharded checkpoint folder.
        output_dir: the folder to write (config.json, weights, tokenizer files).
        tokenizer: tokenizer name or folder; default: the one of the checkpoint's model source
            (students share their teacher's tokenizer).
        overwrite: replace an existing output_dir.
    """
    source, out = Path(checkpoint), Path(output_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite true to replace it")
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        ckpt_file = (
            consolidate(source, Path(tmp) / "consolidated.ckpt") if source.is_dir() else source
        )
        module = load_strategy(ckpt_file)
        staging = Path(tmp) / "export"
        module.model.save_pretrained(staging)
        load_tokenizer(tokenizer or module.model_spec.name_or_path).save_pretrained(staging)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)  # same file system (tmp lives beside out): a whole folder or none
    print(f"exported {type(module).__name__} ({module.model.num_parameters()} parameters) to {out}")
    return out
