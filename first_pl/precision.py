"""`precision: auto`: bf16 autocast only where the hardware multiplies bf16 natively.

bf16 autocast is a 1.4-1.6x speed-up on CPUs with AMX or AVX512-BF16, but on a CPU without
them (AVX2 only) oneDNN emulates bf16 and a matmul runs about 8x *slower* than in float32
(DESIGN.md section 4). So the choice is read off the machine, never guessed from its vendor:
the CPU's feature flags (as PyTorch's cpuinfo reports them), capped by oneDNN's own
`ONEDNN_MAX_CPU_ISA` setting when one is given, and `torch.cuda.is_bf16_supported()` on GPUs.
An explicit precision (`32-true`, `bf16-mixed`, ...) is always used as given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch

AUTO = "auto"
FLOAT32 = "32-true"
BF16_MIXED = "bf16-mixed"
# oneDNN's ISA levels in increasing order; bf16 is native from AVX512_CORE_BF16 on.
_ONEDNN_ISAS = (
    "SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
)  # fmt: skip
_FIRST_NATIVE_BF16_ISA = _ONEDNN_ISAS.index("AVX512_CORE_BF16")


@dataclass(frozen=True)
class Resolved:
    """A resolved precision and the one-line reason that is logged for it."""

    precision: str | int
    reason: str


def cpu_native_bf16(
    capabilities: Mapping[str, object] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[bool, str]:
    """Whether this CPU multiplies bf16 natively, and a description of what was found.

    `capabilities` is `torch.cpu.get_capabilities()` (injectable for tests); `environ` is
    `os.environ`, read for oneDNN's ISA cap (`ONEDNN_MAX_CPU_ISA`, or its old name
    `DNNL_MAX_CPU_ISA`), under which oneDNN does not use AMX or AVX512-BF16 even if present.
    """
    caps = torch.cpu.get_capabilities() if capabilities is None else capabilities
    env = os.environ if environ is None else environ
    level = torch.backends.cpu.get_cpu_capability() if capabilities is None else None
    found = [name for name in ("amx_bf16", "avx512_bf16") if caps.get(name)]
    described = f"CPU capability {level or _best_isa(caps)}"
    if not found:
        return False, f"{described} has no native bf16"
    cap = (env.get("ONEDNN_MAX_CPU_ISA") or env.get("DNNL_MAX_CPU_ISA") or "").upper()
    if cap in _ONEDNN_ISAS and _ONEDNN_ISAS.index(cap) < _FIRST_NATIVE_BF16_ISA:
        return False, f"{described} has {'/'.join(found)} but ONEDNN_MAX_CPU_ISA={cap} disables it"
    return True, f"{described} with native bf16 ({'/'.join(found)})"


def _best_isa(caps: Mapping[str, object]) -> str:
    for name, label in (("avx512_f", "AVX512"), ("avx2", "AVX2")):
        if caps.get(name):
            return label
    return "DEFAULT"


def resolve_precision(
    precision: str | int | None,
    accelerator: str | None,
    *,
    capabilities: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
    cuda_available: bool | None = None,
    cuda_bf16: bool | None = None,
) -> Resolved:
    """Turn `auto` into `bf16-mixed` or `32-true` for the device the run will use.

    GPUs get `bf16-mixed` where `torch.cuda.is_bf16_supported()`, else `32-true` (fp16 with
    loss scaling is left to an explicit `16-mixed`: it can overflow in the 49k-way softmax
    that every loss and metric here takes). Anything but `auto` is returned unchanged.
    """
    if precision is None or str(precision) != AUTO:
        return Resolved(precision, f"precision {precision} (set explicitly)")
    on_gpu = str(accelerator or AUTO).lower() in ("gpu", "cuda")
    if str(accelerator or AUTO).lower() == AUTO:
        on_gpu = torch.cuda.is_available() if cuda_available is None else cuda_available
    if on_gpu:
        bf16 = torch.cuda.is_bf16_supported() if cuda_bf16 is None else cuda_bf16
        choice = BF16_MIXED if bf16 else FLOAT32
        why = "the GPU supports bf16" if bf16 else "the GPU has no bf16"
        return Resolved(choice, f"precision auto -> {choice}: {why}")
    native, described = cpu_native_bf16(capabilities, environ)
    choice = BF16_MIXED if native else FLOAT32
    return Resolved(choice, f"precision auto -> {choice}: {described}")


def autocast_dtype(precision: str | int | None, device_type: str) -> tuple[torch.dtype | None, str]:
    """The autocast dtype (None: float32) for a precision outside a Trainer, and the reason.

    Teacher extraction runs its own inference loop; it takes the same settings as a Trainer.
    """
    resolved = resolve_precision(precision, "gpu" if device_type == "cuda" else "cpu")
    name = str(resolved.precision)
    if name.startswith("bf16"):
        return torch.bfloat16, resolved.reason
    if name.startswith("16"):
        return torch.float16, resolved.reason
    if name.startswith(("32", "64")):
        return None, resolved.reason
    raise ValueError(f"precision must be auto, 32-true, bf16-mixed or 16-mixed, got {precision!r}")
