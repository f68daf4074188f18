"""Which decoder layers a model keeps: the one home of layer surgery, for layer-dropped
students (`first_pl.models`) and the models above a frozen prefix (`first_pl.prefix`)."""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedModel


def keep_indices(
    num_layers: int, keep_every: int | None, keep_layers: list[int] | None
) -> list[int]:
    """Indices of the decoder layers a student keeps."""
    if keep_layers is not None:
        bad = [i for i in keep_layers if not 0 <= i < num_layers]
        if bad or not keep_layers:
            raise ValueError(
                f"model.keep_layers must be a non-empty list of indices in [0, {num_layers}), got {keep_layers}"
            )
        return sorted(set(keep_layers))
    if keep_every is not None:
        return list(range(0, num_layers, keep_every))
    return list(range(num_layers))


def drop_layers(model: PreTrainedModel, keep: list[int]) -> PreTrainedModel:
    """Keep only the listed decoder layers (Llama-style `model.model.layers`), in place."""
    layers = model.model.layers
    if keep == list(range(len(layers))):
        return model
    model.model.layers = nn.ModuleList(layers[i] for i in keep)
    for new_index, layer in enumerate(model.model.layers):
        layer.self_attn.layer_idx = new_index
    model.config.num_hidden_layers = len(keep)
    if getattr(model.config, "layer_types", None) is not None:
        model.config.layer_types = [model.config.layer_types[i] for i in keep]
    return model
