"""Adam's update on the CPU: PyTorch's default (one loop of small operations per tensor) against
the fused kernel `MethodModule.configure_optimizers` chooses (`fused_adam_supported`).

The parameters are the trainable weights of the main job's student (`configs/experiments/
offline_default.yaml`: layers 12, 16, 20, 24 and 29 above a frozen 12-layer prefix and an
untied LM head: 46M weights) built from the benchmark's teacher, with fixed random gradients;
one timed call is one `optimizer.step()`. Both optimizers start from the same weights and
gradients, and the benchmark checks that one step leaves them equal to float32 rounding, so the
ratio compares the same update.
"""

from __future__ import annotations

import torch

from benchmarks.common import Goal, Row, interleaved_seconds
from benchmarks.workbench import Workbench
from first_pl.methods.base import fused_adam_supported
from first_pl.models import ModelSpec, build_model
from first_pl.prefix.split import PrefixSettingsError

STUDENT = {"keep_layers": [12, 16, 20, 24, 29], "prefix_layers": 12}


def _trainable(source: str, generator: torch.Generator) -> list[torch.nn.Parameter]:
    """The main-job student's trainable weights (or, for a model too shallow for its layers, all
    of the model's), each with a fixed random gradient."""
    spec = ModelSpec(name_or_path=source, **STUDENT)
    try:
        model = build_model(spec)
    except PrefixSettingsError:  # a small test model has fewer than 30 layers
        model = build_model(ModelSpec(name_or_path=source))
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator) * 1e-3
    return params


def _copy(params: list[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for c, p in zip(copies, params, strict=True):
        c.grad = p.grad.clone()
    return copies


def optimizer_rows(bench: Workbench) -> list[Row]:
    s = bench.settings
    params = _trainable(s.teacher, torch.Generator().manual_seed(0))
    if not fused_adam_supported(params):
        raise RuntimeError("fused Adam is not supported for the student's weights here")
    loop_params, fused_params = _copy(params), _copy(params)
    loop = torch.optim.Adam(loop_params, lr=1e-3, foreach=False)
    fused = torch.optim.Adam(fused_params, lr=1e-3, fused=True)
    loop.step()
    fused.step()
    worst = max(
        float((a.detach() - b.detach()).abs().max()) for a, b in zip(loop_params, fused_params, strict=True)
    )
    if worst > 1e-6:
        raise RuntimeError(f"fused and looped Adam differ by {worst:g} after one step")
    t = interleaved_seconds({"loop": loop.step, "fused": fused.step}, s.repeats)
    n = sum(p.numel() for p in params)
    return [
        Row(
            "fused Adam step / PyTorch's default CPU Adam step (main-job student's weights)",
            t["fused"] / t["loop"],
            goal=Goal("report"),
            detail=(
                f"{t['fused'] * 1e3:.0f} ms vs {t['loop'] * 1e3:.0f} ms for {n / 1e6:.1f}M trainable "
                f"weights, {s.repeats} repeats; one step equal to {worst:.1e}"
            ),
        )
    ]
