"""Option scoring with each prompt run once against the full `prompt + option` rows, side by side.

The main job's out-of-domain evaluation scores every option of a BIG-bench question by its
log-likelihood after the prompt (`option_loglik_norm_tokens`, max_length 128, 64 questions a
batch, as configs/experiments/offline_default.yaml). Today's full rows recompute the prompt once
per option; the shared path (`first_pl.context_cache`) runs it once per question. Both score the
same batches of the same model, alternating which goes first from batch to batch so that load
from other processes falls on both alike; the figure is the ratio of their summed wall times,
with the largest score difference and whether the predictions agree.

    python -m benchmarks.fig_option_scoring --tasks physics social_iqa --limit 100
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

import first_pl.methods.base as base
from first_pl.data.option_batch import shared_rows
from first_pl.data.template import PromptTemplate
from first_pl.data.tokenize import TruncationReport, collate, encode
from first_pl.methods import FineTune
from first_pl.models import ModelSpec, load_tokenizer
from first_pl.tasks import BigBench

BIGBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "bigbench"


def batches(task: str, tokenizer, limit: int, batch_size: int, max_length: int, scoring: str) -> list[dict]:
    template = PromptTemplate(answer="text", scoring=scoring)
    examples = BigBench(str(BIGBENCH / task), limit=limit).load("test")
    items = [encode(ex, tokenizer, template, max_length, TruncationReport()) for ex in examples]
    return [collate(items[i : i + batch_size], tokenizer.pad_token_id) for i in range(0, len(items), batch_size)]


def evaluate(module: FineTune, batch: dict, shared: bool) -> tuple[float, dict]:
    """Seconds and output of one evaluation, by the shared path or by today's full rows."""
    original = base.shares_context
    if not shared:
        base.shares_context = lambda decoder: False
    try:
        start = time.perf_counter()
        with torch.no_grad():
            out = module.evaluate(batch)
        return time.perf_counter() - start, out
    finally:
        base.shares_context = original


def compare(module: FineTune, task_batches: list[dict]) -> dict[str, float]:
    evaluate(module, task_batches[0], True)  # warm-up of both paths (allocations, kernels)
    evaluate(module, task_batches[0], False)
    seconds = {"shared": 0.0, "full": 0.0}
    worst, agree, questions, rows, tokens = 0.0, 0, 0, 0, {"shared": 0, "full": 0}
    for i, batch in enumerate(task_batches):
        outputs = {}
        for name in ("shared", "full") if i % 2 == 0 else ("full", "shared"):
            spent, outputs[name] = evaluate(module, batch, name == "shared")
            seconds[name] += spent
        scores = [outputs[name]["candidate_logprobs"] for name in ("shared", "full")]
        real = outputs["full"]["candidate_mask"]
        worst = max(worst, float((scores[0][real] - scores[1][real]).abs().max()))
        agree += int((outputs["shared"]["pred"] == outputs["full"]["pred"]).sum())
        questions += len(batch["example_id"])
        rows += batch["option_input_ids"].shape[0]
        tokens["full"] += int(batch["option_attention_mask"].sum())
        split = shared_rows(
            batch["option_input_ids"], batch["option_attention_mask"], batch["option_labels"], batch["option_context"]
        )
        tokens["shared"] += int(split.context_mask.sum()) + int(split.continuation_mask.sum())
    return {**seconds, "worst": worst, "agree": agree, "questions": questions, "rows": rows, **{f"tokens_{k}": v for k, v in tokens.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["physics", "social_iqa"])
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--scoring", default="option_loglik_norm_tokens")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args()
    print(
        f"cpu capability {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} thread(s), "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores; float32"
    )
    tokenizer = load_tokenizer(args.model)
    module = FineTune(model=ModelSpec(name_or_path=args.model, dtype="float32"))
    module.configure_model()
    module.eval()
    for task in args.tasks:
        task_batches = batches(task, tokenizer, args.limit, args.batch_size, args.max_length, args.scoring)
        r = compare(module, task_batches)
        print(
            f"{task}: shared prompt / full rows = {r['shared'] / r['full']:.3f} "
            f"({r['shared']:.1f} s vs {r['full']:.1f} s; {r['questions']} questions, {r['rows']} option rows, "
            f"{r['tokens_shared']} vs {r['tokens_full']} tokens through the model; "
            f"largest score difference {r['worst']:.2e}, predictions agree on {r['agree']}/{r['questions']}; "
            f"load average now {os.getloadavg()[0]:.2f})"
        )


if __name__ == "__main__":
    main()
