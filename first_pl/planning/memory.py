"""Bytes one GPU holds when FSDP trains a model: sharded state, gathered units, activations.

The model is built on the meta device (shapes, no storage), cut and frozen as its `ModelSpec`
says, and split into FSDP units by the strategy's own `auto_wrap_policy` (the policy object
Lightning's `FSDPStrategy` builds from the config), so the units are the ones a run would get.

Per GPU, with N the ranks a unit is sharded over, s the bytes of the stored dtype (float32
weights under bf16-mixed, as `FSDPPrecision` keeps them) and c the bytes of the compute dtype
(`MixedPrecision.param_dtype`):

- weights: sum over units of ceil(numel / N) * s (FSDP1 pads each flat parameter to a multiple
  of N; its 16-byte alignment of each tensor inside is ignored, under 16 bytes per tensor);
- gradients: the same for units holding trainable parameters (FSDP keeps the sharded gradient
  in the stored dtype; the reduce happens in the compute dtype);
- Adam: two states (exp_avg, exp_avg_sq) per trainable element, in the stored dtype; with the
  weights and gradients this is the 16 bytes per parameter / N of ZeRO stage 3 (Rajbhandari
  et al. 2020) for float32 storage;
- gathered: FULL_SHARD keeps the root unit gathered from forward to backward and holds at most
  two decoder units at once (the one computing and the one prefetched; Lightning leaves
  `limit_all_gathers` on), plus one unit's unsharded gradient before its reduce-scatter, all in
  c; SHARD_GRAD_OP and NO_SHARD keep every unit gathered between forward and backward;
- activations: `activation_bytes` (Korthikanti et al. 2022).

Not counted: the CUDA context, NCCL buffers and allocator fragmentation (1-3 GiB in practice),
which is why the plan reports the slack left on a card (`MemoryPlan.slack_gib`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PretrainedConfig

from first_pl.layers import drop_layers, keep_indices
from first_pl.models import ModelSpec, freeze

GIB = 2**30
# Sharding strategies whose units are gathered one or two at a time (reshard after forward).
RESHARDING = ("FULL_SHARD", "HYBRID_SHARD")
# Sharding strategies that keep every unit gathered from forward to backward.
NO_RESHARD = ("SHARD_GRAD_OP", "_HYBRID_SHARD_ZERO2", "NO_SHARD")


@dataclass(frozen=True)
class Workload:
    """What one rank computes per step: its micro-batch and the padded sequence length."""

    batch_size: int
    seq_len: int


@dataclass(frozen=True)
class ShardingSetup:
    """The FSDP settings that decide the bytes: ranks per shard, strategy, dtypes, policies."""

    shard_ranks: int
    sharding: str
    storage_bytes: int
    compute_bytes: int
    wrap_policy: object | None
    checkpoint_policy: object | None


@dataclass(frozen=True)
class MemoryPlan:
    """Per-GPU bytes of one training stage; `units` are (numel, trainable numel), root first."""

    parameters: int
    trainable: int
    units: list[tuple[int, int]]
    checkpointed_layers: int
    weights: int
    gradients: int
    optimizer: int
    gathered: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.gathered + self.activations

    def slack_gib(self, capacity_gib: float) -> float:
        """GiB left on a card of `capacity_gib` (negative: it does not fit)."""
        return capacity_gib - self.total / GIB


def meta_model(config: PretrainedConfig, spec: ModelSpec) -> nn.Module:
    """The model `build_model(spec)` would build, on the meta device (no weights, no hub)."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    model = drop_layers(model, keep_indices(config.num_hidden_layers, spec.keep_every, spec.keep_layers))
    freeze(model, spec)
    return model


def policy_modules(model: nn.Module, policy: object | None) -> list[nn.Module]:
    """The submodules a torch wrap policy (`ModuleWrapPolicy`, ...) or a `check_fn` selects."""
    if policy is None:
        return []
    if hasattr(policy, "_run_policy"):
        chosen = policy._run_policy(model, set(), {})  # the call FSDP makes with the same policy
    else:  # Lightning's older `activation_checkpointing=[...]` gives a check_fn(module) -> bool
        chosen = {m for m in model.modules() if policy(m)}
    return [m for m in model.modules() if m in chosen and m is not model]


def fsdp_units(model: nn.Module, policy: object | None) -> list[tuple[int, int]]:
    """(numel, trainable numel) of each FSDP unit, the root first: a parameter belongs to the
    innermost wrapped module holding it, and the root takes what no wrapped module holds."""
    owner: dict[int, int] = {}
    units = [model, *policy_modules(model, policy)]
    for index, unit in enumerate(units):  # outer units come first, inner ones overwrite
        for param in unit.parameters():
            owner[id(param)] = index
    sizes = [[0, 0] for _ in units]
    for param in model.parameters():
        size = sizes[owner[id(param)]]
        size[0] += param.numel()
        size[1] += param.numel() if param.requires_grad else 0
    return [(n, t) for n, t in sizes]


def activation_bytes(
    config: PretrainedConfig, layers: int, checkpointed: int, work: Workload, compute_bytes: int
) -> int:
    """Activation memory of one training step (Korthikanti et al. 2022, arXiv:2205.05198).

    Their per-layer activations with 16-bit values and no tensor parallelism are
    s*b*h*(34 + 5*a*s/h) bytes (a GPT block: attention scores kept, as eager attention keeps
    them). A checkpointed layer stores only its input, 2*s*b*h bytes, and the backward pass
    recomputes one layer at a time, so one layer's full activations are added when any layer
    is checkpointed. The output layer stores 4*s*b*v bytes (float32 logits); the modules compute
    logits only at response positions, so this is an upper bound. Values scale with the compute
    dtype (c / 2).
    """
    s, b = work.seq_len, work.batch_size
    h, a, v = config.hidden_size, config.num_attention_heads, config.vocab_size
    full_layer = 34 * s * b * h + 5 * a * s * s * b  # s*b*h*(34 + 5*a*s/h), in integers
    stored = checkpointed * 2 * s * b * h + (layers - checkpointed) * full_layer
    recompute = full_layer if checkpointed else 0
    return (stored + recompute) * compute_bytes // 2 + 4 * s * b * v


def gathered_bytes(units: list[tuple[int, int]], setup: ShardingSetup) -> int:
    """Unsharded copies in the compute dtype (see the module docstring)."""
    numels = [n for n, _ in units]
    largest = max(numels)
    if setup.sharding in NO_RESHARD:
        held = sum(numels)
    else:
        held = numels[0] + 2 * max(numels[1:], default=0)
    return (held + largest) * setup.compute_bytes


def plan_memory(
    config: PretrainedConfig, spec: ModelSpec, setup: ShardingSetup, work: Workload
) -> MemoryPlan:
    """Per-GPU bytes of training `spec` under `setup` on `work`."""
    model = meta_model(config, spec)
    units = fsdp_units(model, setup.wrap_policy)
    ranks = setup.shard_ranks
    layers = model.config.num_hidden_layers
    decoder_layer = type(model.get_decoder().layers[0])
    checkpointed = (
        layers
        if spec.gradient_checkpointing  # Hugging Face checkpointing: every decoder layer
        else sum(isinstance(m, decoder_layer) for m in policy_modules(model, setup.checkpoint_policy))
    )
    return MemoryPlan(
        parameters=sum(n for n, _ in units),
        trainable=sum(t for _, t in units),
        units=units,
        checkpointed_layers=checkpointed,
        weights=sum(math.ceil(n / ranks) for n, _ in units) * setup.storage_bytes,
        gradients=sum(math.ceil(n / ranks) for n, t in units if t) * setup.storage_bytes,
        optimizer=2 * sum(math.ceil(t / ranks) for _, t in units) * setup.storage_bytes,
        gathered=gathered_bytes(units, setup),
        activations=activation_bytes(model.config, layers, checkpointed, work, setup.compute_bytes),
    )
