"""The architectures of the paper's models, written from their published `config.json` files.

Planning must work with no hub access and no weights, so the hub ids used in
configs/experiments/table1/ map to the numbers of their model cards' configs (the files
`config.json` at huggingface.co/<id>; Llama-1 33B is published as `huggyllama/llama-30b`).
The parameter totals these give are the published ones (6,738,415,616 for the 7B models,
13,015,864,320 for 13B, 32,528,943,616 for 33B). Any local folder holding a `config.json` is
read instead, which is how the tests plan tiny models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoConfig, LlamaConfig, PretrainedConfig

# Shared by all LLaMA-architecture checkpoints below: SwiGLU MLP, RMSNorm, RoPE, untied head.
_LLAMA_COMMON: dict[str, Any] = {"vocab_size": 32000, "tie_word_embeddings": False, "hidden_act": "silu"}
_SIZES: dict[str, dict[str, int]] = {
    "7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32},
    "13b": {"hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40, "num_attention_heads": 40},
    "33b": {"hidden_size": 6656, "intermediate_size": 17920, "num_hidden_layers": 60, "num_attention_heads": 52},
}
# hub id -> (size, max_position_embeddings, rms_norm_eps), from each model's config.json.
PUBLISHED: dict[str, tuple[str, int, float]] = {
    "huggyllama/llama-7b": ("7b", 2048, 1e-6),
    "huggyllama/llama-13b": ("13b", 2048, 1e-6),
    "huggyllama/llama-30b": ("33b", 2048, 1e-6),
    "meta-llama/Llama-2-7b-hf": ("7b", 4096, 1e-5),
    "meta-llama/Llama-2-13b-hf": ("13b", 4096, 1e-5),
    "openlm-research/open_llama_7b": ("7b", 2048, 1e-6),
    "openlm-research/open_llama_13b": ("13b", 2048, 1e-6),
}


def architecture(name_or_path: str) -> PretrainedConfig:
    """The config of a model named in an experiment: a published id above, or a local folder."""
    if name_or_path in PUBLISHED:
        size, positions, eps = PUBLISHED[name_or_path]
        return LlamaConfig(
            **_LLAMA_COMMON,
            **_SIZES[size],
            num_key_value_heads=_SIZES[size]["num_attention_heads"],
            max_position_embeddings=positions,
            rms_norm_eps=eps,
        )
    if (Path(name_or_path) / "config.json").is_file():
        return AutoConfig.from_pretrained(name_or_path, local_files_only=True)
    raise ValueError(
        f"plan: model {name_or_path!r} is neither a local folder with config.json nor one of the "
        f"published architectures it knows ({', '.join(sorted(PUBLISHED))}); add its config.json "
        "numbers to first_pl/planning/architectures.py or point the model at a folder"
    )
