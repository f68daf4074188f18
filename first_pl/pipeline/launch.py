"""One first-pl command of a pipeline stage: in this process for a one-process trainer, and as
its own process group otherwise.

Lightning's launcher starts the other ranks by re-running `sys.argv`; inside `first-pl pipeline`
that would start the whole pipeline once more per rank (which then stops at the output folder's
lock). So with a trainer of N > 1 processes a stage's `fit`, `test` or `extract` runs as a child
`torchrun --standalone --nproc_per_node N -m first_pl <command> ...`: its ranks run that command
only, Lightning reads their ranks from torchrun's variables and launches nothing itself, and the
pipeline (which holds the output folder's lock) waits for it. One process keeps the in-process
call, which the main job and the tests rely on.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
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


def run_first_pl(args: list[str], processes: int, log: Path) -> None:
    """`first-pl <args>`: in this process when `processes` is 1, else under torchrun, its output
    appended to `log` (an error names the log and shows its last lines)."""
    if processes == 1:
        from first_pl.cli import main

        main(args)
        return
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", str(processes), "-m", "first_pl", *args]
    print(f"  {args[0]} on {processes} processes, output in {log}", flush=True)
    with log.open("a") as out:
        out.write(f"$ {shlex.join(command)}\n")
        out.flush()
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise RuntimeError(
            f"first-pl {args[0]} on {processes} processes exited with status {code}; "
            f"its output is in {log}, where the ranks' output ends with:\n{ranks_tail(log)}"
        )


def ranks_tail(log: Path, lines: int = 25) -> str:
    """The last lines the ranks wrote, before torchrun's own failure summary (which names only
    exit codes)."""
    text = log.read_text(errors="replace").splitlines()
    agent = next((i for i, line in enumerate(text) if "] failed (exitcode:" in line), len(text))
    return "\n".join(text[:agent][-lines:])
