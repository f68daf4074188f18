"""Teacher-side figures: extraction against its own forward, and that forward against full logits
and against a plain transformers forward.

All four variants run on the same batches, interleaved (see `common.interleaved_seconds`):

- extract: `extract_topk` into a fresh store (softmax, top-k, HDF5 writes; store creation and
  finalisation included, amortised here over `Settings.batches` batches);
- forward: the same teacher forward alone, `response_hidden` + `lm_head.head_logits` (decoder, then
  the head at response positions only), no top-k, no writes;
- full: the library-built model's own forward, `[B, L, V]` logits everywhere;
- plain: a plainly loaded transformers model (`from_pretrained(folder)`, nothing else),
  `model(input_ids).logits`.
"""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM

from benchmarks.common import Goal, Row, interleaved_seconds
from benchmarks.workbench import Workbench
from first_pl.lm_head import head_logits
from first_pl.models import resolve_source
from first_pl.teacher.extract import response_hidden


def teacher_rows(bench: Workbench) -> list[Row]:
    s = bench.settings
    teacher = bench.teacher
    plain = AutoModelForCausalLM.from_pretrained(resolve_source(s.teacher)).eval()
    batches = bench.batches(s.batches)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)

    @torch.inference_mode()
    def forward() -> None:
        for batch in batches:
            hidden, _, _ = response_hidden(teacher, batch)
            head_logits(teacher, hidden).float()

    @torch.inference_mode()
    def full() -> list[torch.Tensor]:
        return [
            teacher(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            for b in batches
        ]

    @torch.inference_mode()
    def plain_forward() -> list[torch.Tensor]:
        return [plain(b["input_ids"]).logits for b in batches]

    t = interleaved_seconds(
        {
            "extract": lambda: bench.extract(batches),
            "forward": forward,
            "full": full,
            "plain": plain_forward,
        },
        s.repeats,
    )
    bench.timings["teacher_forward_per_batch"] = t["forward"] / len(batches)
    rate = {name: tokens / seconds for name, seconds in t.items()}
    shape = f"{len(batches)} x batch {s.batch_size}, {tokens} tokens, {s.repeats} repeats"
    return [
        Row(
            "extraction throughput / teacher forward alone",
            t["forward"] / t["extract"],
            goal=Goal(">=", 0.95),
            detail=f"{rate['extract']:.0f} vs {rate['forward']:.0f} tok/s ({shape})",
        ),
        Row(
            "teacher forward, head at responses / full logits (speed-up)",
            t["full"] / t["forward"],
            detail=f"{rate['forward']:.0f} vs {rate['full']:.0f} tok/s",
        ),
        Row(
            f"teacher forward tok/s ({s.dtype}) / plain transformers forward",
            t["plain"] / t["forward"],
            goal=Goal(">=", 0.95),
            detail=(
                f"{rate['forward']:.0f} vs {rate['plain']:.0f} tok/s; same work (full logits): "
                f"library model / plain = {t['plain'] / t['full']:.2f}"
            ),
        ),
    ]
