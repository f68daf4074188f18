"""Read a trainer config's FSDP settings the way Lightning would, without a GPU or a process group.

The `strategy` mapping is instantiated by jsonargparse as LightningCLI does (class paths
resolved, `auto_wrap_policy` given as a list of layer classes turned into torch's
`ModuleWrapPolicy` by `FSDPStrategy` itself), and the dtypes come from Lightning's
`FSDPPrecision` for the configured `precision`, so the plan follows any change in either.
"""

from __future__ import annotations

from typing import Any

import torch
from jsonargparse import ArgumentParser
from lightning.pytorch.plugins.precision.fsdp import FSDPPrecision
from lightning.pytorch.strategies import FSDPStrategy, Strategy

from first_pl.models import DTYPES
from first_pl.planning.memory import NO_RESHARD, RESHARDING, ShardingSetup

HYBRID = ("HYBRID_SHARD", "_HYBRID_SHARD_ZERO2")


def fsdp_strategy(trainer: dict[str, Any], source: str) -> FSDPStrategy:
    """The `FSDPStrategy` a trainer config builds; any other strategy is refused by name."""
    strategy = trainer.get("strategy")
    if not isinstance(strategy, dict) or "class_path" not in strategy:
        raise ValueError(
            f"plan: {source} trainer.strategy is {strategy!r}; plan models an FSDPStrategy "
            "given as class_path/init_args (as configs/trainer/fsdp.yaml does)"
        )
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--strategy", type=Strategy)
    built = parser.instantiate(parser.parse_object({"strategy": strategy})).strategy
    if not isinstance(built, FSDPStrategy):
        raise ValueError(
            f"plan: {source} trainer.strategy is {type(built).__name__}; plan models "
            "lightning.pytorch.strategies.FSDPStrategy (configs/trainer/fsdp.yaml)"
        )
    return built


def sharding_setup(
    trainer: dict[str, Any], source: str, model_dtype: str, gpus_per_node: int, num_nodes: int
) -> ShardingSetup:
    """Ranks per shard, dtypes and policies of the trainer config for a model stored in `model_dtype`."""
    strategy = fsdp_strategy(trainer, source)
    sharding = strategy.sharding_strategy.name
    if sharding not in RESHARDING + NO_RESHARD:
        raise ValueError(f"plan: {source} sharding_strategy {sharding} is not one plan models")
    precision = FSDPPrecision(str(trainer.get("precision", "32-true")))
    # "-true" precisions convert the module (FSDPPrecision.convert_module); mixed ones keep the
    # model's own dtype for the sharded weights and compute in MixedPrecision.param_dtype.
    storage = (
        precision._desired_input_dtype
        if precision.precision.endswith("-true") and precision.precision != "32-true"
        else DTYPES[model_dtype]
    )
    compute = precision.mixed_precision_config.param_dtype or storage
    ranks = {"NO_SHARD": 1}.get(sharding, gpus_per_node if sharding in HYBRID else gpus_per_node * num_nodes)
    checkpointing = strategy._activation_checkpointing_kwargs or {}
    return ShardingSetup(
        shard_ranks=ranks,
        sharding=sharding,
        storage_bytes=torch.empty(0, dtype=storage).element_size(),
        compute_bytes=torch.empty(0, dtype=compute).element_size(),
        wrap_policy=strategy.kwargs.get("auto_wrap_policy"),
        checkpoint_policy=checkpointing.get("auto_wrap_policy") or checkpointing.get("check_fn"),
    )
