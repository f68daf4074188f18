"""Analytic FLOPs of a Llama-style decoder, and the CPU's peak FLOP rate they are held against.

FLOPs (one multiply-add = 2 FLOPs) counted per token of a padded batch `[rows, T]`, the way the
kernels run it (padding is compute: a right-padded row is multiplied at every position):

- each decoder layer: `2 x (q, k, v, o, gate, up, down weight parameters)` for its matmuls, plus
  `4 x T x heads x head_dim` for attention (`Q K^T` and `softmax(.) V` over all T positions:
  the CPU's scaled-dot-product attention with a padding mask computes the full square);
- the LM head: `2 x vocab x hidden` at the positions whose logits the code computes
  (`first_pl.lm_head`: response positions, answer positions, option tokens), not at every one.

Not counted: the embedding lookup, RMSNorm, RoPE, SiLU and the elementwise product, residual
adds, the attention softmax and masking, the loss and softmax over the vocabulary (all O(hidden)
or O(vocab) per token, a few percent at most of the matmuls for SmolLM2's shapes).

Training multiplies a trainable layer's forward by 3 (forward, gradients of the activations,
gradients of the weights: the usual 6 x parameters per token); a frozen layer or head that
gradients must still pass through costs 2 x (forward and activation gradients). That is exact
for the lowest trainable layer too: its input RMSNorm's weight trains, so its q, k, v input
gradients are computed although nothing below it trains (torch's FlopCounterMode agrees,
tests/benchmarks/test_job_flops.py).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class DecoderShape:
    """The sizes of a Llama-style decoder that its FLOPs depend on."""

    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    layers: int

    @classmethod
    def of(cls, config) -> DecoderShape:
        """From a Hugging Face `LlamaConfig` (or any config with the same attribute names)."""
        heads = int(config.num_attention_heads)
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return cls(
            hidden=int(config.hidden_size),
            intermediate=int(config.intermediate_size),
            heads=heads,
            kv_heads=int(getattr(config, "num_key_value_heads", None) or heads),
            head_dim=int(head_dim),
            vocab=int(config.vocab_size),
            layers=int(config.num_hidden_layers),
        )

    @property
    def layer_weights(self) -> int:
        """Weight parameters of one layer's matmuls: q, k, v, o, gate, up, down."""
        q = o = self.hidden * self.heads * self.head_dim
        k = v = self.hidden * self.kv_heads * self.head_dim
        return q + k + v + o + 3 * self.hidden * self.intermediate

    def layer_forward(self, rows: int, width: int) -> int:
        """FLOPs of one layer's forward over a padded batch `[rows, width]`."""
        per_token = 2 * self.layer_weights + 4 * width * self.heads * self.head_dim
        return rows * width * per_token

    def head_forward(self, positions: int) -> int:
        """FLOPs of the LM head at `positions` positions."""
        return 2 * self.vocab * self.hidden * positions


# --- the CPU's peak ----------------------------------------------------------------------------

AMX_BF16_PER_CYCLE = 1024  # Intel AMX: a 16x32 by 32x16 bf16 tile product every 16 cycles per core


@dataclass(frozen=True)
class CpuPeak:
    """Peak FLOP rate of `cores` cores, per compute dtype, with the assumption spelled out."""

    capability: str  # torch.backends.cpu.get_cpu_capability()
    flags: frozenset[str]
    vendor: str
    family: int
    ghz: float
    cores: int

    def flops_per_cycle(self, dtype: str) -> tuple[int | None, str]:
        """FLOPs per cycle per core in `dtype` ('float32' or 'bfloat16'), and why."""
        amd = self.vendor == "AuthenticAMD"
        if self.capability.startswith("AVX512"):
            if amd and self.family == 0x19:  # Zen 4: 512-bit FMA issued as two 256-bit halves
                fp32, why = 32, "AVX-512 on Zen 4: 2 x 256-bit FMA pipes x 8 float32 x 2"
            else:
                fp32, why = 64, "AVX-512: 2 x 512-bit FMA units x 16 float32 x 2"
        elif self.capability.startswith("AVX2") and "fma" in self.flags:
            fp32, why = 32, "AVX2: 2 x 256-bit FMA units x 8 float32 x 2"
        else:
            return None, f"no peak known for CPU capability {self.capability}"
        if dtype != "bfloat16":
            return fp32, why
        if "amx_bf16" in self.flags:
            return AMX_BF16_PER_CYCLE, "AMX-BF16: a 16x32x16 bf16 tile product per 16 cycles"
        if "avx512_bf16" in self.flags:
            return 2 * fp32, f"AVX512-BF16 (vdpbf16ps: 2 bf16 products per float32 lane), {why}"
        return fp32, f"no native bf16 (emulated; the float32 peak bounds it), {why}"

    def gflops(self, dtype: str) -> tuple[float | None, str]:
        """Peak GFLOP/s in `dtype` and the line that says how it was derived."""
        per_cycle, why = self.flops_per_cycle(dtype)
        if per_cycle is None:
            return None, why
        peak = self.cores * self.ghz * per_cycle
        return peak, f"{self.cores} cores x {self.ghz:.2f} GHz x {per_cycle} FLOP/cycle ({why})"


def read_cpuinfo(path: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo, plus the highest `cpu MHz` of any."""
    fields: dict[str, str] = {}
    mhz = 0.0
    text = path.read_text() if path.is_file() else ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "cpu MHz":
            mhz = max(mhz, float(value))
        fields.setdefault(key, value)
    fields["max cpu MHz"] = str(mhz)
    return fields


def this_cpu(cores: int | None = None, cpuinfo: dict[str, str] | None = None) -> CpuPeak:
    """This machine's `CpuPeak`: the clock /proc/cpuinfo reports (in a VM its nominal clock; no
    turbo), `cores` threads (default: the CPUs this process may run on)."""
    info = read_cpuinfo() if cpuinfo is None else cpuinfo
    family = info.get("cpu family", "0")
    return CpuPeak(
        capability=torch.backends.cpu.get_cpu_capability(),
        flags=frozenset(info.get("flags", "").split()),
        vendor=info.get("vendor_id", ""),
        family=int(family) if re.fullmatch(r"\d+", family) else 0,
        ghz=float(info.get("max cpu MHz", 0)) / 1000,
        cores=cores or len(os.sched_getaffinity(0)),
    )
