"""Which device a stage runs on and on how many processes, read off the machine once.

A trainer config says `accelerator` (`auto`, `cpu`, `gpu`/`cuda`) and `devices` (a count, a
list of indices, `auto` or `-1`). Lightning resolves these inside each process; the pipeline
must know the answer before it starts one (to launch `torchrun` with N processes, and to run
the teacher's extraction on the device its fit and test use), so it resolves them the same way
here, from the number of CUDA GPUs this process sees:

- `auto` is CUDA when a GPU is visible, else the CPU (as Lightning's `auto`);
- on a GPU, `devices: auto` and `devices: -1` mean every visible GPU (one process each);
- on the CPU, `devices: auto` means one process (Lightning's CPU default); `devices: -1` is
  refused, as Lightning refuses it, with a message saying to give the number of processes.

`gpus` is a parameter everywhere (default: `visible_gpus()`), so tests choose for 0, 1 or 4
GPUs on a machine with none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

GPU_NAMES = ("gpu", "cuda")


def visible_gpus() -> int:
    """CUDA GPUs this process can use (0 with a CPU build of torch)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@dataclass(frozen=True)
class DeviceChoice:
    """The device kind (`gpu` or `cpu`, as `first-pl extract --accelerator` takes it), the
    processes per stage, and the one-line reason that is printed for them."""

    accelerator: str
    processes: int
    reason: str


def resolve_accelerator(accelerator: str | None, gpus: int | None = None) -> tuple[str, str]:
    """`gpu` or `cpu` for a trainer's `accelerator`, and why (`auto`: by the visible GPUs)."""
    gpus = visible_gpus() if gpus is None else gpus
    name = str(accelerator or "auto").lower()
    if name in GPU_NAMES:
        return "gpu", f"accelerator {name}"
    if name != "auto":
        return name, f"accelerator {name}"
    if gpus:
        return "gpu", f"accelerator auto -> gpu ({gpus} CUDA GPU{'s' * (gpus > 1)} visible)"
    return "cpu", "accelerator auto -> cpu (no CUDA GPU visible)"


def choose_devices(trainer: dict[str, Any], source: str, gpus: int | None = None) -> DeviceChoice:
    """The device and process count of a trainer section (see the module docstring)."""
    gpus = visible_gpus() if gpus is None else gpus
    kind, why = resolve_accelerator(trainer.get("accelerator"), gpus)
    devices = trainer.get("devices", "auto")
    if isinstance(devices, str) and devices.lstrip("-").isdigit():
        devices = int(devices)
    if kind == "gpu" and gpus == 0:
        raise ValueError(
            f"trainer {source}: {why}, but no CUDA GPU is visible (torch.cuda.is_available() is "
            f"{torch.cuda.is_available()}, torch {torch.__version__}); install the GPU build "
            "(FIRST_PL_TORCH=gpu scripts/install.sh) or use configs/trainer/cpu.yaml"
        )
    if isinstance(devices, list):
        processes = len(devices)
    elif isinstance(devices, int) and not isinstance(devices, bool) and devices >= 1:
        processes = devices
    elif devices in ("auto", None, -1) and kind == "gpu":
        processes = gpus
    elif devices in ("auto", None) and kind == "cpu":
        processes = 1
    else:
        every = " (every GPU)" if devices == -1 else ""
        raise ValueError(
            f"trainer {source}: devices is {devices!r}{every} with {why}; first-pl pipeline "
            "needs the number of processes per stage there (a positive integer, or a list of "
            "device indices)"
        )
    reason = f"{why}, devices {devices!r} -> {processes} process{'es' * (processes > 1)}"
    return DeviceChoice(kind, processes, reason)
