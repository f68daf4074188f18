"""Cut a pretrained model into its frozen prefix and the trainable model above it, and back.

`split_prefix` turns a loaded model of all its source's layers into the model a teacher or
student trains: the decoder layers from L up (or a subset of them, `keep_layers`), the final
norm and an LM head of its own, untied from the frozen embeddings (SmolLM2 ties them: a tied
head frozen with the embeddings cannot adapt, and one trained with them would change the
prefix). The first L layers become a `FrozenPrefix` attached as `model.first_pl_prefix`, which
`first_pl.lm_head.hidden_at` runs (or reads from its memo) before the layers above.

`join_prefix` is the way back for `export`: a plain Hugging Face model (prefix layers, then the
trained layers, untied head) that loads anywhere without first_pl and gives the same logits.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import PreTrainedModel

from first_pl.layers import drop_layers
from first_pl.prefix.frozen import FrozenPrefix

PREFIX_ATTR = "first_pl_prefix"


class PrefixSettingsError(ValueError):
    """`model.prefix_layers` and the layers kept above it do not fit the model."""


def upper_layers(num_layers: int, prefix_layers: int, keep_layers: list[int] | None) -> list[int]:
    """Indices (in the source's numbering) of the decoder layers trained above the prefix."""
    if not 0 < prefix_layers < num_layers:
        raise PrefixSettingsError(
            f"model.prefix_layers must be in [1, {num_layers - 1}] for a model of {num_layers} "
            f"decoder layers, got {prefix_layers}"
        )
    if keep_layers is None:
        return list(range(prefix_layers, num_layers))
    bad = [i for i in keep_layers if not prefix_layers <= i < num_layers]
    if bad or not keep_layers:
        raise PrefixSettingsError(
            f"model.keep_layers must name layers above the prefix, in [{prefix_layers}, "
            f"{num_layers}), when model.prefix_layers is {prefix_layers}; got {keep_layers}"
        )
    return sorted(set(keep_layers))


def _prefix_decoder(model: PreTrainedModel, layers: nn.ModuleList) -> nn.Module:
    """A decoder of the model's class over `layers`, with a copy of the embeddings and rotary
    table (the model keeps its own, which FSDP may shard and Lightning may move or cast)."""
    decoder = model.get_decoder()
    config = copy.deepcopy(decoder.config)
    config.num_hidden_layers = len(layers)
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = config.layer_types[: len(layers)]
    with torch.device("meta"):
        prefix = type(decoder)(config)
    prefix.embed_tokens = copy.deepcopy(decoder.embed_tokens)
    prefix.rotary_emb = copy.deepcopy(decoder.rotary_emb)
    prefix.layers = layers
    prefix.norm = nn.Identity()
    meta = [name for name, t in [*prefix.named_parameters(), *prefix.named_buffers()] if t.is_meta]
    if meta:
        raise PrefixSettingsError(
            f"{type(decoder).__name__} has parts the prefix does not know how to copy: {meta[:3]}"
        )
    return prefix


def source_prefix(model: PreTrainedModel, prefix_layers: int) -> nn.Module:
    """The decoder of `model`'s embeddings and first `prefix_layers` layers (as `split_prefix`
    cuts it, the model untouched): how an offloaded prefix is rebuilt from its source."""
    return _prefix_decoder(model, nn.ModuleList(model.get_decoder().layers[:prefix_layers]))


def split_prefix(
    model: PreTrainedModel, prefix_layers: int, keep_layers: list[int] | None, source: str
) -> PreTrainedModel:
    """Keep the layers above `prefix_layers` in `model` (in place) and attach the prefix."""
    layers = model.get_decoder().layers
    above = upper_layers(len(layers), prefix_layers, keep_layers)
    prefix = FrozenPrefix(source_prefix(model, prefix_layers), source)
    drop_layers(model, above)
    head = model.get_output_embeddings()
    head.weight = nn.Parameter(head.weight.detach().clone())
    model.config.tie_word_embeddings = False
    model.get_input_embeddings().requires_grad_(False)
    setattr(model, PREFIX_ATTR, prefix)
    return model


def prefix_of(model: nn.Module) -> FrozenPrefix | None:
    """The frozen prefix a model runs first, if it has one."""
    return getattr(model, PREFIX_ATTR, None)


def join_prefix(model: PreTrainedModel) -> PreTrainedModel:
    """A plain model: the prefix's layers, then `model`'s, with `model`'s untied head and norm.

    The result is a new model of the same class (weights copied), with `num_hidden_layers`
    counting both parts; a model without a prefix is returned as it is.
    """
    prefix = prefix_of(model)
    if prefix is None:
        return model
    config = copy.deepcopy(model.config)
    upper = model.get_decoder().layers
    config.num_hidden_layers = prefix.layers + len(upper)
    config.tie_word_embeddings = False
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = [*prefix.decoder.config.layer_types, *config.layer_types]
    joined = type(model)(config)
    decoder = joined.get_decoder()
    decoder.embed_tokens.load_state_dict(prefix.decoder.embed_tokens.state_dict())
    for target, layer in zip(decoder.layers, [*prefix.decoder.layers, *upper], strict=True):
        target.load_state_dict(layer.state_dict())
    decoder.norm.load_state_dict(model.get_decoder().norm.state_dict())
    joined.get_output_embeddings().load_state_dict(model.get_output_embeddings().state_dict())
    joined.generation_config = copy.deepcopy(model.generation_config)
    return joined.to(model.dtype)
