"""The one loader of a model for the commands that read one (`extract`, `coverage`, `ask`, `export`).

Every such command takes the same sources, through `load_model`, so a model that works with one
works with all of them:

- a first_pl Lightning `.ckpt` file (any method: the checkpoint records its class and init
  arguments, `first_pl.methods.checkpoint`);
- a sharded checkpoint folder (ModelParallelStrategy / FSDPStrategy), consolidated on the fly;
- a Hugging Face model folder (with `config.json`; `first-pl export` writes one);
- a `.gguf` file, the offline alias `smollm2-135m-instruct`, or a hub id (`ModelSpec`).

Anything else is refused by `ModelLoadError`, whose message names the command's option, the
value given and the sources above.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from first_pl.fileio.digest import sha256_of
from first_pl.methods.base import MethodModule
from first_pl.methods.checkpoint import (
    LIGHTNING_META_FILE,
    CheckpointError,
    check_sharded_checkpoint,
    load_checkpoint_file,
    load_method,
)
from first_pl.methods.finetune import FineTune
from first_pl.models import TOKENIZER_FILES, ModelSourceError, ModelSpec

EXPECTED = (
    "a first_pl .ckpt file, a sharded checkpoint folder, a Hugging Face model folder (with "
    "config.json), a .gguf file, or a model name / hub id"
)
_OPTIMIZER_KEY = re.compile(r"optimizer_\d+")
SourceKind = Literal["checkpoint", "sharded_checkpoint", "model"]


class ModelLoadError(CheckpointError, ModelSourceError):
    """A model source no command can load; the message names the option and what it expects.

    It is both a `CheckpointError` and a `ModelSourceError`, so a caller that catches the
    refusal of a checkpoint, or of a model name, also catches this.
    """


@dataclass(frozen=True)
class LoadedModel:
    """A loaded source: `module` in eval mode (a `FineTune` around a plain Hugging Face model)."""

    module: MethodModule
    kind: SourceKind
    source: str

    @property
    def method(self) -> str | None:
        """The method class a checkpoint was trained with; None for a plain model."""
        return None if self.kind == "model" else type(self.module).__name__

    def identity(self) -> str:
        """What a teacher store records as its teacher.

        A checkpoint is named by the sha256 of its bytes (a file name says nothing about which
        weights it holds); a plain model by the name or path given.
        """
        if self.kind == "model":
            return self.source
        return f"{Path(self.source).name} sha256:{sha256_of(Path(self.source))}"


def source_kind(source: str, option: str) -> SourceKind:
    """Which kind of source `source` is, refusing what no loader reads (before any loading)."""
    path = Path(source)
    if path.is_dir():
        if (path / "config.json").is_file():
            return "model"
        if (path / LIGHTNING_META_FILE).is_file():
            return "sharded_checkpoint"
        only_tokenizer = any((path / name).is_file() for name in TOKENIZER_FILES)
        raise ModelLoadError(
            f"{option} {source} is a folder with neither config.json (a Hugging Face model) nor "
            f"{LIGHTNING_META_FILE} (a sharded checkpoint)"
            + (" (it holds only a tokenizer, which is no model)" if only_tokenizer else "")
            + f"; expected {EXPECTED}"
        )
    if path.is_file():
        if path.suffix == ".ckpt":
            return "checkpoint"
        if path.suffix == ".gguf":
            return "model"
        raise ModelLoadError(f"{option} {source} is a file but neither .ckpt nor .gguf; expected {EXPECTED}")
    # A hub id is `name` or `namespace/name`: anything else that does not exist is a path.
    if path.suffix in (".ckpt", ".gguf") or source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise ModelLoadError(f"{option} {source} does not exist; expected {EXPECTED}")
    return "model"


def consolidate(folder: Path, out_file: Path, trust: bool = False) -> Path:
    """One `.ckpt` file from a sharded checkpoint folder (weights + the rank-0 metadata file).

    ModelParallelStrategy stores the weights under `state_dict`, FSDPStrategy under `model`;
    the optimizer shards are dropped, since loading a model needs only the weights. Every
    pickle in the folder is vetted first unless `trust` (`first_pl.methods.checkpoint`).
    """
    if not (folder / LIGHTNING_META_FILE).is_file():
        raise CheckpointError(
            f"{folder} is not a sharded Lightning checkpoint (no {LIGHTNING_META_FILE})"
        )
    check_sharded_checkpoint(folder, trust)
    metadata = load_checkpoint_file(folder / LIGHTNING_META_FILE, trust)
    dcp_to_torch_save(folder, out_file)
    checkpoint = load_checkpoint_file(out_file, trust)
    checkpoint.update(metadata)
    if "state_dict" not in checkpoint and "model" in checkpoint:
        checkpoint["state_dict"] = checkpoint.pop("model")
    for key in [k for k in checkpoint if _OPTIMIZER_KEY.fullmatch(k)]:
        del checkpoint[key]
    torch.save(checkpoint, out_file)
    return out_file


def load_model(
    source: str, option: str, workdir: str | Path | None = None, trust: bool = False
) -> LoadedModel:
    """Load any source of the module docstring as a module in eval mode, on the CPU.

    `option` is the command's name for the argument (`--teacher`, `--checkpoint`), used in
    every error. A sharded checkpoint is consolidated into a temporary file under `workdir`
    (the system's temporary folder by default; give one on the disk that has room for it).
    A checkpoint is loaded weights-only unless `trust` (the command's `--trust_checkpoint`).
    """
    kind = source_kind(source, option)
    try:
        if kind == "checkpoint":
            module = load_method(source, trust=trust)
        elif kind == "sharded_checkpoint":
            with tempfile.TemporaryDirectory(dir=workdir) as tmp:
                consolidated = consolidate(Path(source), Path(tmp) / "consolidated.ckpt", trust)
                module = load_method(consolidated, trust=trust)
        else:
            module = FineTune(model=ModelSpec(name_or_path=source))
            module.configure_model()
            module.eval()
    except (CheckpointError, ModelSourceError) as err:
        raise ModelLoadError(f"{option} {source}: {err}") from err
    return LoadedModel(module, kind, source)
