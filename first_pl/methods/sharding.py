"""FSDP2 (`fully_shard`) for `MethodModule.configure_model` under `ModelParallelStrategy`.

Lightning 2.6 refuses `strategy="fsdp"` on CPU, but `ModelParallelStrategy` with
`tensor_parallel_size=1` runs FSDP2 anywhere: it builds a device mesh and leaves the sharding to
`configure_model` (DESIGN section 3). Each decoder layer becomes its own FSDP unit; the root unit
holds the rest: the embedding, the final norm and the LM head, which Llama ties to the embedding
(one parameter, so it must live in one unit).

FSDP2 all-gathers a unit's parameters in the hooks around that module's `forward`. The
methods never call the root's `forward` (it would compute `[B, L, V]` logits): they run the
decoder, keep the response rows, then apply the head. `install_logits_at` therefore puts that
whole computation on the root as one method and registers it with
`register_fsdp_forward_method`, so the root's hooks wrap it: the root is all-gathered (and
lazily initialised as FSDP's root) before the decoder runs, the tied head sees the gathered
weight, and the gradients of both uses reduce-scatter once in backward.
"""

from __future__ import annotations

import types

from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

from first_pl.lm_head import check_plain_lm_head, logits_at

LOGITS_AT = "first_pl_logits_at"
DATA_PARALLEL = "data_parallel"


def install_logits_at(model: nn.Module) -> None:
    """Give `model` a `first_pl_logits_at` method (`first_pl.lm_head.logits_at`) that FSDP2
    treats as a forward (no-op unsharded); a model whose logits are not the bare head's is
    refused here, before training."""
    check_plain_lm_head(model)
    setattr(model, LOGITS_AT, types.MethodType(logits_at, model))
    register_fsdp_forward_method(model, LOGITS_AT)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The repeated blocks of a Hugging Face decoder (`model.model.layers` for Llama)."""
    layers = getattr(model.get_decoder(), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(f"{type(model).__name__} has no decoder `layers` list to shard")
    return layers


def shard_model(model: nn.Module, mesh: DeviceMesh) -> nn.Module:
    """`fully_shard` every decoder layer, then the model (the root unit), over the data-parallel mesh.

    `ModelParallelStrategy` hands a 2-D mesh (data_parallel, tensor_parallel); FSDP shards over
    the data-parallel dimension only.
    """
    dp_mesh = (
        mesh[DATA_PARALLEL]
        if mesh.mesh_dim_names and DATA_PARALLEL in mesh.mesh_dim_names
        else mesh
    )
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=dp_mesh)
    fully_shard(model, mesh=dp_mesh)
    return model
