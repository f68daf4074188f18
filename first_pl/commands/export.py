"""`first-pl export`: turn a training checkpoint into a plain Hugging Face model folder.

The result loads with `AutoModelForCausalLM.from_pretrained` / `AutoTokenizer.from_pretrained`
anywhere (no first_pl, no Lightning) and gives the trained module's logits exactly. A sharded
checkpoint (a folder written by ModelParallelStrategy / FSDPStrategy with sharded state) is
consolidated into one file first.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from first_pl.fileio.atomic import atomic_folder
from first_pl.fileio.output_path import OutputPathError, check_output_path
from first_pl.methods.loading import load_model
from first_pl.models import load_tokenizer

# Written into every export: `--overwrite true` replaces only a folder that holds it.
EXPORT_MARKER = "first_pl_export.json"


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
        checkpoint: a `.ckpt` file of any first_pl strategy, or a sharded checkpoint folder
            (also a Hugging Face folder, .gguf file or hub id: `first_pl.methods.loading`;
            a .gguf file becomes a plain float32 folder).
        output_dir: the folder to write (config.json, weights, tokenizer files, and
            `first_pl_export.json`, which records the source and its strategy: null for a
            plain model).
        tokenizer: tokenizer name or folder; default: the one of the checkpoint's model source
            (students share their teacher's tokenizer).
        overwrite: replace an earlier export at output_dir (never any other folder).
    """
    source, out = Path(checkpoint), Path(output_dir)
    check_output_dir(out, source, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        loaded = load_model(checkpoint, "--checkpoint", workdir=tmp)  # beside out: room for it
        module = loaded.module
        where = str(source.resolve()) if source.exists() else checkpoint
        record = {"checkpoint": where, "strategy": loaded.strategy}

        def write(staging: Path) -> None:
            module.model.save_pretrained(staging)
            load_tokenizer(tokenizer or module.model_spec.name_or_path).save_pretrained(staging)
            (staging / EXPORT_MARKER).write_text(json.dumps(record, indent=2) + "\n")

        atomic_folder(out, write)  # a whole folder or none (check_output_dir allowed replacing it)
    print(
        f"exported {loaded.strategy or checkpoint} ({module.model.num_parameters()} parameters) to {out}"
    )
    return out
