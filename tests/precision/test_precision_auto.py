"""`precision: auto` resolves from the hardware it is given, logs why, and never overrides."""

from __future__ import annotations

import logging

import pytest
import torch

from first_pl.precision import autocast_dtype, cpu_native_bf16, resolve_precision
from first_pl.trainer import Trainer

AVX2_EPYC = {"avx2": True, "avx512_f": False, "avx512_bf16": False, "amx_bf16": False}
SAPPHIRE_RAPIDS = {"avx2": True, "avx512_f": True, "avx512_bf16": True, "amx_bf16": True}
COOPER_LAKE = {"avx2": True, "avx512_f": True, "avx512_bf16": True, "amx_bf16": False}
SKYLAKE_X = {"avx2": True, "avx512_f": True, "avx512_bf16": False, "amx_bf16": False}


@pytest.mark.parametrize(
    ("caps", "expected", "reason"),
    [
        (AVX2_EPYC, "32-true", "precision auto -> 32-true: CPU capability AVX2 has no native bf16"),
        (SKYLAKE_X, "32-true", "precision auto -> 32-true: CPU capability AVX512 has no native bf16"),
        (SAPPHIRE_RAPIDS, "bf16-mixed", "precision auto -> bf16-mixed: CPU capability AVX512 with native bf16 (amx_bf16/avx512_bf16)"),
        (COOPER_LAKE, "bf16-mixed", "precision auto -> bf16-mixed: CPU capability AVX512 with native bf16 (avx512_bf16)"),
    ],
)  # fmt: skip
def test_auto_on_cpu_follows_native_bf16(caps, expected, reason) -> None:
    resolved = resolve_precision("auto", "cpu", capabilities=caps, environ={})
    assert resolved.precision == expected
    assert resolved.reason == reason


def test_onednn_isa_cap_below_bf16_means_float32() -> None:
    native, why = cpu_native_bf16(SAPPHIRE_RAPIDS, {"ONEDNN_MAX_CPU_ISA": "avx2"})
    assert not native and "ONEDNN_MAX_CPU_ISA=AVX2 disables it" in why
    assert cpu_native_bf16(SAPPHIRE_RAPIDS, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"})[0]


@pytest.mark.parametrize("explicit", ["32-true", "bf16-mixed", "16-mixed", 32])
def test_explicit_precision_wins(explicit) -> None:
    for caps in (AVX2_EPYC, SAPPHIRE_RAPIDS):
        assert resolve_precision(explicit, "cpu", capabilities=caps).precision == explicit


def test_auto_on_gpu_takes_bf16_where_supported() -> None:
    assert resolve_precision("auto", "gpu", cuda_bf16=True).precision == "bf16-mixed"
    assert resolve_precision("auto", "gpu", cuda_bf16=False).precision == "32-true"
    on_auto = resolve_precision("auto", "auto", cuda_available=True, cuda_bf16=True)
    assert on_auto.precision == "bf16-mixed"
    on_cpu = resolve_precision("auto", "auto", cuda_available=False, capabilities=AVX2_EPYC)
    assert on_cpu.precision == "32-true"


def test_autocast_dtype_for_extraction(monkeypatch) -> None:
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: AVX2_EPYC)
    assert autocast_dtype("auto", "cpu")[0] is None
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: SAPPHIRE_RAPIDS)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert autocast_dtype("auto", "cpu")[0] is torch.bfloat16
    assert autocast_dtype("32-true", "cpu")[0] is None
    with pytest.raises(ValueError, match="precision must be auto, 32-true, bf16-mixed or 16-mixed"):
        autocast_dtype("transformer-engine", "cpu")


@pytest.mark.parametrize(("caps", "plugin"), [(AVX2_EPYC, "32-true"), (SAPPHIRE_RAPIDS, "bf16-mixed")])
def test_trainer_resolves_auto_once_and_logs_it(caps, plugin, monkeypatch, caplog) -> None:
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    with caplog.at_level(logging.INFO):
        trainer = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    assert trainer.precision == plugin
    assert sum("precision auto ->" in r.getMessage() for r in caplog.records) == 1
    caplog.clear()
    with caplog.at_level(logging.INFO):
        explicit = Trainer(accelerator="cpu", precision="32-true", logger=False)
    assert explicit.precision == "32-true"
    assert not any("precision auto" in r.getMessage() for r in caplog.records)
