"""The frozen shared prefix as a lever: training steps with the prefix's states remembered,
against today's full-depth teacher and 24-layer student, side by side.

Every variant is a FineTune step (forward, loss, backward, Adam) on the same generated-task
batches, interleaved. With a prefix, the states after layer L come from the memo (warmed by one
pass over the batches before timing, as the pipeline's prefix stage does once for the job), so a
step runs only the layers above L, forward and backward, and the untied head.
"""

from __future__ import annotations

import itertools

from benchmarks.common import Goal, Row, interleaved_seconds
from benchmarks.fig_train import _cycling, method_step
from benchmarks.workbench import Workbench, _TrainerStub
from first_pl.models import ModelSpec

PREFIX_LAYERS = 14
FULL_DEPTH_STUDENT = [*range(20), 26, 27, 28, 29]  # configs/model/student_finetune.yaml
PREFIX_TEACHER = list(range(PREFIX_LAYERS, 30))
PREFIX_STUDENT = [14, 15, 16, 17, 28, 29]


def _module(bench: Workbench, **spec):
    from first_pl.methods import FineTune

    s = bench.settings
    module = FineTune(model=ModelSpec(name_or_path=s.teacher, dtype=s.dtype, **spec))
    module.configure_model()
    module.trainer = _TrainerStub()  # type: ignore[assignment]
    module.train()
    return module, module.configure_optimizers()["optimizer"]


def prefix_rows(bench: Workbench) -> list[Row]:
    s = bench.settings
    layers = bench.teacher.config.num_hidden_layers
    prefix = min(PREFIX_LAYERS, layers - 2)
    variants = {
        "teacher": {},
        "student": {"keep_layers": [i for i in FULL_DEPTH_STUDENT if i < layers] or None},
        "prefix teacher": {"prefix_layers": prefix},
        "prefix student": {
            "prefix_layers": prefix,
            "keep_layers": [i for i in PREFIX_STUDENT if prefix <= i < layers] or None,
        },
    }
    batches = list(itertools.islice(bench.data.train_dataloader(), 4))
    steps = {}
    for name, spec in variants.items():
        module, optimizer = _module(bench, **spec)
        steps[name] = _cycling(lambda b, m=module, o=optimizer: method_step(m, o, b), batches)
    t = interleaved_seconds(steps, s.repeats)  # the warm-up call fills the prefixes' memos
    what = f"batch {s.batch_size}, {s.dtype}, {s.repeats} repeats, prefix {prefix} layers"
    return [
        Row(
            "prefix teacher step / full-depth teacher step",
            t["prefix teacher"] / t["teacher"],
            goal=Goal("report"),
            detail=f"{t['prefix teacher']:.2f} s vs {t['teacher']:.2f} s; {layers - prefix} of {layers} layers trained; {what}",
        ),
        Row(
            "prefix student step / 24-layer student step",
            t["prefix student"] / t["student"],
            goal=Goal("report"),
            detail=f"{t['prefix student']:.2f} s vs {t['student']:.2f} s; layers {PREFIX_STUDENT} above the prefix; {what}",
        ),
    ]
