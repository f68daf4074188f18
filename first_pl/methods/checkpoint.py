"""Load any method's Lightning checkpoint back into a module (for extraction, export, asking).

A checkpoint records its method class (`MethodModule.on_save_checkpoint`) and its init
arguments (`save_hyperparameters`), so it can be rebuilt without the config that trained it.

A checkpoint is a pickle, and unpickling can call any function the file names. Every load is
therefore weights-only (`torch.load(weights_only=True)`: tensors, containers, numbers, strings
and the classes allowed below) unless the user passes `--trust_checkpoint true`; a file that
needs anything else is refused with the names of what it needs (`refusal`).
"""

from __future__ import annotations

import importlib
import pickle
import re
from pathlib import Path

import torch

from first_pl.data.record import DATA_KEY
from first_pl.methods.base import METHOD_KEY, MethodModule, OptimizerConfig, recorded_method
from first_pl.methods.compatibility import CheckpointError
from first_pl.models import ModelSpec

TRUST_FLAG = "trust_checkpoint"

# first_pl's config dataclasses, which a checkpoint may hold as objects in its hyper-parameters
# (`MethodModule` saves them as dicts, `plain`, but a checkpoint saved by an earlier first_pl
# holds the objects); unpickling one only sets its fields. OptimizerConfig also under the
# package's other name, `first_pl.modules` (`first_pl._renamed`).
SAFE_CHECKPOINT_CLASSES = (
    OptimizerConfig,
    ModelSpec,
    (OptimizerConfig, "first_pl.modules.base.OptimizerConfig"),
)
torch.serialization.add_safe_globals(list(SAFE_CHECKPOINT_CLASSES))


def refusal(path: str | Path, err: pickle.UnpicklingError) -> CheckpointError:
    """The error for a weights-only load that failed: what the file needs and the opt-in, or,
    when no disallowed global is to blame, that the file cannot be read."""
    try:
        names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # not a zip checkpoint (legacy format, damaged): torch's message names it
        names = re.findall(r"GLOBAL (\S+) was not an allowed global", str(err))
    if not names:
        return CheckpointError(f"checkpoint {path} cannot be read: {str(err).splitlines()[0]}")
    return CheckpointError(
        f"checkpoint {path} needs {', '.join(names)} to load, which a weights-only load refuses: "
        f"unpickling it could run any code its author chose. Load it only if you trust where it "
        f"came from, with --{TRUST_FLAG} true"
    )


def load_checkpoint_file(path: str | Path, trust: bool = False) -> dict:
    """`torch.load` of a checkpoint file on the CPU: weights-only unless `trust`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as err:
        if trust:
            raise
        raise refusal(path, err) from err


# What the `.metadata` pickle of a torch.distributed.checkpoint (sharded) folder names: DCP's
# own records, torch.Size, dtypes, layouts and the folder's path. torch.distributed.checkpoint
# reads it with a plain pickle.load, so it is vetted first (`check_sharded_checkpoint`).
_DCP = "torch.distributed.checkpoint"
_SHARDED_METADATA_GLOBALS = frozenset(
    {(f"{_DCP}.metadata", name) for name in (
        "Metadata", "MetadataIndex", "BytesStorageMetadata", "ChunkStorageMetadata",
        "TensorStorageMetadata", "TensorProperties", "StorageMeta", "_MEM_FORMAT_ENCODING",
    )}  # fmt: skip
    | {(f"{_DCP}.filesystem", "_StorageInfo"), ("torch", "Size"), ("torch.serialization", "_get_layout")}
    | {("pathlib", "PosixPath"), ("pathlib", "PurePosixPath"), ("collections", "OrderedDict")}
)
SHARDED_METADATA_FILE = ".metadata"


class _ShardedMetadataUnpickler(pickle.Unpickler):
    """Unpickles only `_SHARDED_METADATA_GLOBALS` and torch dtypes; refuses any other global."""

    def __init__(self, file, path: Path) -> None:
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str):
        dtype = module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)
        if dtype or (module, name) in _SHARDED_METADATA_GLOBALS:
            return super().find_class(module, name)
        raise CheckpointError(
            f"sharded checkpoint {self.path} needs {module}.{name} to load, which first_pl "
            f"refuses: unpickling it could run any code its author chose. Load it only if you "
            f"trust where it came from, with --{TRUST_FLAG} true"
        )


def check_sharded_checkpoint(folder: str | Path, trust: bool = False) -> None:
    """Refuse a sharded checkpoint folder whose `.metadata` pickle names more than DCP's
    records (nothing is checked with `trust`)."""
    path = Path(folder) / SHARDED_METADATA_FILE
    if trust or not path.is_file():
        return
    with path.open("rb") as f:
        try:
            _ShardedMetadataUnpickler(f, Path(folder)).load()
        except CheckpointError:
            raise
        except Exception as err:  # a damaged pickle raises several types
            raise CheckpointError(f"sharded checkpoint {folder}: {path.name} cannot be read: {err}") from err


# `--ckpt_path` values Lightning resolves itself instead of reading a path.
LIGHTNING_CKPT_NAMES = ("last", "best", "hpc")
# `--ckpt_path registry` / `registry:<model>`: a model of Lightning's model registry, which the
# Trainer downloads itself (with litmodels installed). Lightning 2.6 matches the name with a
# private function; tests/methods/test_lightning_names.py pins this pattern to it.
REGISTRY_CKPT = re.compile(r"registry(:.*)?", re.IGNORECASE | re.DOTALL)
# Lightning's own file in a sharded checkpoint folder (the trainer state beside the shards and
# DCP's `.metadata`), which its FSDP and ModelParallel strategies write; Lightning 2.6 names it
# in a private constant, and tests/methods/test_fsdp.py pins this name on a checkpoint it wrote.
LIGHTNING_META_FILE = "meta.pt"


def names_registry(ckpt_path: str | Path) -> bool:
    """Whether `--ckpt_path` names a model of Lightning's registry rather than a path."""
    return isinstance(ckpt_path, str) and REGISTRY_CKPT.fullmatch(ckpt_path) is not None


def check_ckpt_path(ckpt_path: str | Path | None) -> None:
    """Refuse a `--ckpt_path` that names no file or folder (Lightning's own error is a traceback
    from inside the trainer); a sharded checkpoint is a folder, so any existing path passes."""
    if ckpt_path is None or str(ckpt_path) in LIGHTNING_CKPT_NAMES or names_registry(ckpt_path):
        return
    if not Path(ckpt_path).exists():
        raise CheckpointError(f"--ckpt_path {ckpt_path} does not exist")


def read_ckpt_path(
    ckpt_path: str | Path | None, trust: bool, weights_only: bool | None = None
) -> dict | None:
    """The checkpoint a `--ckpt_path` names, vetted before Lightning touches it; None for a
    name Lightning resolves itself (`last`, ...) or a sharded folder (its pickle vetted here).

    Refused by name: a path that does not exist, a damaged file, one that a weights-only load
    refuses (unless `trust`), NaN weights, and a `--weights_only` contradicting `trust`.
    """
    if weights_only is not None and weights_only == trust:
        raise CheckpointError(
            f"--weights_only {str(weights_only).lower()} contradicts --{TRUST_FLAG} "
            f"{str(trust).lower()}: checkpoints are loaded weights-only unless --{TRUST_FLAG} "
            f"true; drop --weights_only"
        )
    check_ckpt_path(ckpt_path)
    if ckpt_path is None or not Path(ckpt_path).exists():
        return None
    if Path(ckpt_path).is_dir():
        check_sharded_checkpoint(ckpt_path, trust)
        return None
    try:
        checkpoint = load_checkpoint_file(ckpt_path, trust)
    except CheckpointError:
        raise
    except Exception as err:  # torch.load raises several types for a damaged file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"--ckpt_path {ckpt_path} cannot be read (truncated, damaged or not a checkpoint): {reason}"
        ) from err
    check_finite_weights(ckpt_path, checkpoint)
    return checkpoint


def method_class(path: str) -> type[MethodModule]:
    module_name, _, class_name = path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, MethodModule)):
        raise CheckpointError(f"{path!r} is not a first_pl method class")
    return cls


def check_finite_weights(path: str | Path, checkpoint: dict) -> None:
    """Refuse a checkpoint whose weights hold NaN or infinity (a fit that diverged): the model
    would answer every question with NaN confidence and fill a teacher store with NaN."""
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict):
        return
    bad = [
        name for name, value in state.items()
        if torch.is_tensor(value) and value.is_floating_point() and not bool(value.isfinite().all())
    ]  # fmt: skip
    if bad:
        raise CheckpointError(
            f"checkpoint {path} has NaN or infinite weights in {len(bad)} of {len(state)} "
            f"tensors (first: {bad[0]}), as a fit that diverged leaves; use a checkpoint saved "
            f"before the loss became NaN"
        )


def read_checkpoint(path: str | Path, trust: bool = False) -> dict:
    """The checkpoint dict (weights-only unless `trust`), with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (a sharded checkpoint folder must be consolidated first)")
    try:
        checkpoint = load_checkpoint_file(path, trust)
    except CheckpointError:
        raise
    except Exception as err:  # torch raises several types for a damaged file
        raise CheckpointError(f"checkpoint {path} cannot be read: {err}") from err
    if recorded_method(checkpoint) is None or "state_dict" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} was not written by a first_pl method (no {METHOD_KEY!r} entry)")
    check_finite_weights(path, checkpoint)
    return checkpoint


def load_method(
    path: str | Path, expect: type[MethodModule] | None = None, trust: bool = False
) -> MethodModule:
    """Rebuild the module a checkpoint came from, with its trained weights, in eval mode.

    `trust`: unpickle whatever the file holds (`--trust_checkpoint`); else weights-only.
    """
    checkpoint = read_checkpoint(path, trust)
    cls = method_class(recorded_method(checkpoint))
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
