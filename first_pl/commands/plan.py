"""`first-pl plan`: will an experiment's training stages fit on N GPUs of 48 GB or 80 GB?

Checked without a GPU and without weights: each stage's model is built on the meta device from
its published architecture (first_pl/planning/architectures.py), split into the FSDP units of
the trainer config, and its per-GPU bytes computed (first_pl/planning/memory.py says how).

    first-pl plan --experiment configs/experiments/table1            # the nine Table-1 settings
    first-pl plan --experiment configs/experiments/table1/csqa_llama1.yaml --gpus_per_node 4
"""

from __future__ import annotations

from first_pl.planning.architectures import architecture
from first_pl.planning.experiment import PlannedStage, experiment_files, stages
from first_pl.planning.memory import GIB, MemoryPlan, plan_memory
from first_pl.planning.strategy import sharding_setup

# The paper's RTX A6000 (48 GB) and the A100 / H100 80 GB cards.
DEFAULT_CAPACITIES_GB = (48.0, 80.0)
DEFAULT_GPUS_PER_NODE = 8
LEGEND = """\
weights, grads, Adam: sharded over N ranks, sum over FSDP units of ceil(numel/N) x bytes of the
  stored dtype (Adam: 2 states); gathered: unsharded units in the compute dtype (FULL_SHARD: root
  + 2 decoder units + one unit's gradient); activations (b x s per rank, Korthikanti et al. 2022):
  checkpointed layers 2sbh each + one recomputed layer sbh(34 + 5as/h) + logits 4sbv.
GB columns: slack in GiB on one card of that size (negative: does not fit); CUDA context, NCCL
  buffers and fragmentation (1-3 GiB) are not counted."""


def _gpus(stage: PlannedStage, override: int | None) -> int:
    devices = stage.trainer.get("devices")
    if override is not None:
        return override
    return devices if isinstance(devices, int) and devices > 0 else DEFAULT_GPUS_PER_NODE


def plan_stage(stage: PlannedStage, gpus_per_node: int | None, num_nodes: int | None) -> tuple[int, MemoryPlan]:
    """GPUs used and the memory plan of one stage."""
    gpus = _gpus(stage, gpus_per_node)
    nodes = num_nodes if num_nodes is not None else int(stage.trainer.get("num_nodes", 1))
    setup = sharding_setup(stage.trainer, stage.experiment, stage.spec.dtype, gpus, nodes)
    return gpus * nodes, plan_memory(architecture(stage.spec.name_or_path), stage.spec, setup, stage.work)


def _gib(value: int) -> str:
    return f"{value / GIB:.2f}"


def plan(
    experiment: str = "configs/experiments/table1",
    gpus_per_node: int | None = None,
    num_nodes: int | None = None,
    capacities_gb: tuple[float, ...] = DEFAULT_CAPACITIES_GB,
) -> list[dict[str, object]]:
    """Print per-GPU memory of every training stage of an experiment file (or a folder of them).

    Args:
        experiment: a `first-pl pipeline` experiment YAML, or a folder of them.
        gpus_per_node: GPUs per node; default: the trainer's `devices`, or 8 for `devices: -1`.
        num_nodes: nodes; default: the trainer's `num_nodes` (1).
        capacities_gb: card sizes to check, in GiB as the driver reports them.

    Returns the rows printed (bytes per GPU), for scripts and tests.
    """
    if gpus_per_node is not None and gpus_per_node < 1 or num_nodes is not None and num_nodes < 1:
        raise ValueError(f"plan: --gpus_per_node and --num_nodes must be >= 1, got {gpus_per_node}, {num_nodes}")
    header = ["experiment", "stage", "model", "params", "GPUs", "weights", "grads", "Adam",
              "gathered", "activations (b x s)", "total GiB", *[f"{c:g} GB" for c in capacities_gb]]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    rows = []
    for path in experiment_files(experiment):
        for stage in stages(path):
            gpus, memory = plan_stage(stage, gpus_per_node, num_nodes)
            slack = [memory.slack_gib(c) for c in capacities_gb]
            cells = [stage.experiment, stage.stage, stage.spec.name_or_path, f"{memory.parameters:,}",
                     str(gpus), _gib(memory.weights), _gib(memory.gradients), _gib(memory.optimizer),
                     _gib(memory.gathered),
                     f"{_gib(memory.activations)} ({stage.work.batch_size} x {stage.work.seq_len})",
                     _gib(memory.total), *[f"{'fits' if s >= 0 else 'no'} ({s:+.1f})" for s in slack]]  # fmt: skip
            print("| " + " | ".join(cells) + " |")
            rows.append({"experiment": stage.experiment, "stage": stage.stage, "gpus": gpus, "plan": memory})
    print(LEGEND)
    return rows
