"""`first-pl export`: turn a training checkpoint into a plain Hugging Face model folder.

The result loads with `AutoModelForCausalLM.from_pretrained` / `AutoTokenizer.from_pretrained`
anywhere (no first_pl, no Lightning) and gives the trained module's logits exactly; its
`README.md` is a model card saying how it was trained, how it answers and what it scored. A
sharded checkpoint (a folder written by ModelParallelStrategy / FSDPStrategy with sharded
state) is consolidated into one file first.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path

from first_pl.commands.model_card import model_card, teacher_transform
from first_pl.data.record import exported_record
from first_pl.fileio.atomic import atomic_folder
from first_pl.fileio.output_path import OutputPathError, check_output_path
from first_pl.fileio.run_files import EXPORT_MARKER
from first_pl.lora import merge_lora
from first_pl.methods.loading import load_model
from first_pl.models import load_tokenizer
from first_pl.prefix import join_prefix

# EXPORT_MARKER is written into every export: `--overwrite true` replaces only a folder that
# holds it.


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
    added = files_not_exported(out)
    if added:
        shown = ", ".join(added[:8]) + (f" and {len(added) - 8} more" if len(added) > 8 else "")
        raise OutputPathError(
            f"--output_dir {out} holds files that first-pl export did not write: {shown}; "
            f"--overwrite true replaces only an export's own files (listed in its "
            f"{EXPORT_MARKER}): move these out first or choose a new folder"
        )


def exported_files(folder: Path) -> list[str]:
    """Every file under `folder`, as paths relative to it, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())


def files_not_exported(folder: Path) -> list[str]:
    """Files in an export folder that its `EXPORT_MARKER` does not list: a user's additions,
    which replacing the folder would delete. An export whose marker lists no files (written
    by an older first_pl) cannot tell its own files from others, so all of them count."""
    try:
        listed = json.loads((folder / EXPORT_MARKER).read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        listed = None
    own = set(listed if isinstance(listed, list) else []) | {EXPORT_MARKER}
    return [name for name in exported_files(folder) if name not in own]


def export(
    checkpoint: str,
    output_dir: str,
    tokenizer: str | None = None,
    overwrite: bool = False,
    trust_checkpoint: bool = False,
) -> Path:
    """Save a checkpoint's model and tokenizer as a Hugging Face folder with a model card.

    Args:
        checkpoint: a `.ckpt` file of any first_pl method, or a sharded checkpoint folder
            (also a Hugging Face folder, .gguf file or hub id: `first_pl.methods.loading`;
            a .gguf file becomes a plain float32 folder).
        output_dir: the folder to write: config.json, weights, tokenizer files, `README.md`
            (the model card: `first_pl.commands.model_card`) and `first_pl_export.json`, which
            records the source, its method (null for a plain model), its teacher transform
            (FIRST's c, label smoothing's delta) and its data record (the template and
            max_length it answers with, read back by `first-pl ask`), its LoRA settings (null
            without LoRA; a LoRA model is exported merged) and the files written.
        tokenizer: tokenizer name or folder; default: the one of the checkpoint's model source
            (students share their teacher's tokenizer).
        overwrite: replace an earlier export at output_dir (never any other folder, nor one
            holding files the export did not write).
        trust_checkpoint: load a checkpoint that needs more than tensors and plain data (its
            pickle can run code): only for a file from a source you trust. Default: refused.
    """
    source, out = Path(checkpoint), Path(output_dir)
    check_output_dir(out, source, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        loaded = load_model(checkpoint, "--checkpoint", workdir=tmp, trust=trust_checkpoint)  # beside out: room for it
        module = loaded.module
        where = str(source.resolve()) if source.exists() else checkpoint
        data = module.data_record or exported_record(source)
        lora = module.model_spec.lora
        record = {
            "checkpoint": where,
            "method": loaded.method,
            "teacher_transform": teacher_transform(module),
            "lora": None if lora is None else {**asdict(lora), "merged": True},
            "data": data,
        }
        tested = source if loaded.kind != "model" else None
        card = model_card(module, data, out, tested)
        # LoRA adapters are folded into the weights: the export loads without peft.
        merge_lora(module.model)

        def write(staging: Path) -> None:
            join_prefix(module.model).save_pretrained(staging)  # a frozen prefix rejoins its layers
            load_tokenizer(tokenizer or module.model_spec.name_or_path).save_pretrained(staging)
            (staging / "README.md").write_text(card)
            marker = {**record, "files": sorted([*exported_files(staging), EXPORT_MARKER])}
            (staging / EXPORT_MARKER).write_text(json.dumps(marker, indent=2) + "\n")

        atomic_folder(out, write)  # a whole folder or none (check_output_dir allowed replacing it)
    print(
        f"exported {loaded.method or checkpoint} ({module.model.num_parameters()} parameters) to {out}"
    )
    return out
