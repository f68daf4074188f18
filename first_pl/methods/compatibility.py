"""Whether a model fits what it is given: a tokenizer's ids and a checkpoint's weights.

Each check lives here once, for every command that needs it: `fit`/`test` and `ask` share
`check_vocabulary`; `--ckpt_path` (before LightningCLI swaps the config's model for the
checkpoint's) and `MethodModule.on_load_checkpoint` (a checkpoint restored into a module built
from a config) share `check_checkpoint_model`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from typing import Any

import torch

# The ModelSpec fields that decide a checkpoint's weights; dtype, gradient checkpointing and
# freezing change how a model trains, not which weights it has.
MODEL_IDENTITY = ("name_or_path", "keep_every", "keep_layers")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or not a first_pl method's."""


class VocabularyError(ValueError):
    """A tokenizer has token ids beyond the model's embedding rows."""


def check_vocabulary(
    model: torch.nn.Module, tokenizer: Any, tokenizer_label: str, model_label: str, advice: str
) -> None:
    """Refuse a tokenizer with ids the model has no embedding for: the first forward would
    otherwise fail with an IndexError deep inside the embedding.

    The labels name the two as the caller's user gave them (an option and its value).
    """
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise VocabularyError(
            f"{tokenizer_label} has {len(tokenizer)} tokens but {model_label} embeds only "
            f"{rows}; {advice}"
        )


def model_identity(spec: Any) -> dict[str, Any]:
    """The `MODEL_IDENTITY` fields of a model spec: a `ModelSpec`, a dict (a checkpoint's
    hyper-parameters) or a jsonargparse namespace (a parsed config)."""
    if is_dataclass(spec) and not isinstance(spec, type):
        spec = asdict(spec)
    elif hasattr(spec, "as_dict"):
        spec = spec.as_dict()
    spec = dict(spec or {})
    return {field: spec.get(field) for field in MODEL_IDENTITY}


def check_checkpoint_model(checkpoint: Mapping[str, Any], configured: Any, source: str) -> None:
    """Refuse, naming both models, a checkpoint trained with another model than ``configured``.

    A checkpoint without a saved model (not a first_pl method's) has nothing to compare.
    """
    saved = (checkpoint.get("hyper_parameters") or {}).get("model")
    if saved is None or configured is None:
        return
    saved, configured = model_identity(saved), model_identity(configured)
    if saved != configured:
        raise CheckpointError(
            f"{source} was trained with model {saved} but the config gives model {configured}; "
            "use the model settings the checkpoint was trained with"
        )
