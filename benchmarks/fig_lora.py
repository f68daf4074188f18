"""LoRA against full fine-tuning: one FineTune step of the same student, interleaved.

Both modules build the benchmark's student (`Settings.keep_every` of the teacher's layers); the
LoRA one carries rank-16 adapters on every attention and MLP projection
(`configs/model/lora.yaml`) and trains only them. A step is forward, loss, backward and Adam's
update, as in `fig_train`. Memory is what training adds to the weights: gradients and Adam's two
moments (float32) of the trainable parameters, counted exactly; activations are the same for
both, since LoRA still runs the whole network forward and backward through its inputs.
"""

from __future__ import annotations

import itertools

from benchmarks.common import Goal, Row, interleaved_seconds
from benchmarks.fig_train import _cycling, method_step
from benchmarks.workbench import Workbench, _TrainerStub
from first_pl.lora import LoraSettings
from first_pl.models import ModelSpec

LORA = LoraSettings(r=16, alpha=32)


def _module(bench: Workbench, lora: LoraSettings | None):
    from first_pl.methods import FineTune

    s = bench.settings
    module = FineTune(
        model=ModelSpec(name_or_path=s.teacher, keep_every=s.keep_every, dtype=s.dtype, lora=lora)
    )
    module.configure_model()
    module.trainer = _TrainerStub()  # type: ignore[assignment]
    module.train()
    return module, module.configure_optimizers()["optimizer"]


def trainable_state_bytes(module) -> int:
    """Gradient plus Adam's exp_avg and exp_avg_sq for every trainable parameter, in float32."""
    return 3 * 4 * sum(p.numel() for p in module.parameters() if p.requires_grad)


def lora_rows(bench: Workbench) -> list[Row]:
    s = bench.settings
    full, full_opt = _module(bench, None)
    lora, lora_opt = _module(bench, LORA)
    batches = list(itertools.islice(bench.distill_data.train_dataloader(), 4))
    t = interleaved_seconds(
        {
            "full": _cycling(lambda b: method_step(full, full_opt, b), batches),
            "lora": _cycling(lambda b: method_step(lora, lora_opt, b), batches),
        },
        s.repeats,
    )
    full_bytes, lora_bytes = trainable_state_bytes(full), trainable_state_bytes(lora)
    trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    layers = full.model.config.num_hidden_layers
    what = f"{layers}-layer student, batch {s.batch_size}, {s.repeats} repeats, r={LORA.r} on all projections"
    return [
        Row(
            "LoRA training step / full fine-tuning step (same student)",
            t["lora"] / t["full"],
            goal=Goal("report"),
            detail=f"{t['lora']:.2f} s vs {t['full']:.2f} s; {what}",
        ),
        Row(
            "LoRA training state / full fine-tuning training state (grads + Adam)",
            lora_bytes / full_bytes,
            goal=Goal("report"),
            detail=(
                f"{lora_bytes / 2**20:.1f} MiB vs {full_bytes / 2**20:.1f} MiB; "
                f"{trainable:,} trainable parameters"
            ),
        ),
    ]
