"""The device and process count of a pipeline stage's fit / test / extract, from its trainer
section; `first_pl.runner.run_first_pl` runs the stage's command in this process for one
process and as its own torchrun group otherwise."""

from __future__ import annotations

from typing import Any

from first_pl.devices import DeviceChoice, choose_devices


def stage_devices(trainer: dict[str, Any], source: str, gpus: int | None = None) -> DeviceChoice:
    """The device and processes of every fit / test / extract a trainer section runs.

    The pipeline launches each stage on this machine, so `num_nodes` > 1 is refused (a cluster
    runs its stages with torchrun or SLURM, docs/slurm/). `devices: auto` or `-1` counts the
    visible GPUs (`gpus`, default: as torch sees them) when the stage runs on CUDA, and `auto`
    is one process on the CPU (`first_pl.devices.choose_devices`).
    """
    nodes = trainer.get("num_nodes", 1)
    if nodes not in (None, 1):
        raise ValueError(
            f"trainer {source}: num_nodes is {nodes}, but first-pl pipeline launches its stages on "
            "one node; run the stages of a multi-node setting with torchrun or SLURM (docs/slurm/)"
        )
    return choose_devices(trainer, source, gpus)


def trainer_processes(trainer: dict[str, Any], source: str, gpus: int | None = None) -> int:
    """The number of processes a trainer section asks for (`stage_devices`)."""
    return stage_devices(trainer, source, gpus).processes

