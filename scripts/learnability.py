"""How fast SmolLM2-135M-Instruct learns the generated task when it answers with the letter
and when it answers with the option's text: the measurement behind the offline default's
`template.answer: text` (README, "Why the generated task answers with text").

    python scripts/learnability.py [--steps 60] [--formats letter text] [--label_noise 0]

Each format: the same seeded questions (category kind, 4 options), batch 16, Adam lr 2e-4 with
the repository's warm-up + cosine schedule, bf16 autocast, cross-entropy on every response token
(`FineTune` itself, without a Trainer). Prints, every 10 steps, the answer-token loss (ln 4 =
1.386 is knowing nothing) and the candidate-restricted accuracy of the training batches (from
each step's own forward pass, before its update), then the test accuracy.
About 2 s per step on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from first_pl.data.qa_datamodule import QADataModule  # noqa: E402
from first_pl.data.template import PromptTemplate  # noqa: E402
from first_pl.methods import FineTune  # noqa: E402
from first_pl.methods.base import warmup_cosine  # noqa: E402
from first_pl.methods.losses import hard_label_ce  # noqa: E402
from first_pl.methods.multiple_choice import candidate_output  # noqa: E402
from first_pl.models import SMOLLM2_ALIAS, ModelSpec  # noqa: E402
from first_pl.tasks import GeneratedMC  # noqa: E402


def first_rows(mask: torch.Tensor) -> torch.Tensor:
    """Index, among the `mask`-selected rows in (b, t) order, of each example's first response
    position: its answer position."""
    counts = mask.sum(1)
    return torch.cumsum(counts, 0) - counts


def measure(model_name: str, answer: str, steps: int, label_noise: float, seed: int) -> float:
    """Train one model on one answer format; print its curve; return its test accuracy (%)."""
    torch.manual_seed(seed)
    task = GeneratedMC(
        train_size=16 * steps, validation_size=16, test_size=200, kinds={"category": 1.0},
        min_options=4, max_options=4, label_noise=label_noise, seed=seed,
    )  # fmt: skip
    data = QADataModule(
        model_name, train_task=task, template=PromptTemplate(answer=answer), batch_size=16
    )
    data.setup("fit")
    module = FineTune(model=ModelSpec(name_or_path=model_name))
    module.configure_model()
    optimizer = torch.optim.Adam(module.parameters(), lr=2e-4, eps=1e-6)
    warmup = int(0.03 * steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, steps, warmup, 0.0)
    )
    start, losses, correct = time.time(), [], []
    for step, batch in enumerate(data.train_dataloader(), start=1):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, targets, mask = module.response_logits(batch)
        module.loss(logits, targets, batch, mask).backward()
        optimizer.step(), optimizer.zero_grad(), schedule.step()
        answers = first_rows(mask)  # from this step's own forward pass, before the update
        at_answer = logits.detach()[answers].float()
        losses.append(hard_label_ce(at_answer, targets[answers]).item())
        out = candidate_output(torch.log_softmax(at_answer, -1), batch)
        correct.append(out["correct"].float().mean().item())
        if step % 10 == 0:
            print(
                f"{answer:>6} step {step:4d}  answer loss {sum(losses[-10:]) / 10:.3f}  "
                f"train acc {100 * sum(correct[-10:]) / 10:5.1f}%  {time.time() - start:5.0f} s",
                flush=True,
            )
        if step == steps:
            break
    module.eval()
    hits = 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for batch in data.test_dataloader()[0]:
            hits += int(module.evaluate(batch)["correct"].sum())
    return 100 * hits / len(data.examples(task, "test"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default=SMOLLM2_ALIAS, help="model and tokenizer (default: %(default)s)"
    )
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--formats", nargs="+", default=["letter", "text"])
    parser.add_argument("--label_noise", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {
        f: measure(args.model, f, args.steps, args.label_noise, args.seed) for f in args.formats
    }
    print(f"\ntest accuracy after {args.steps} steps (4 options: chance 25%):")
    for answer, accuracy in results.items():
        print(f"  answer = {answer:<6} {accuracy:5.1f}%")


if __name__ == "__main__":
    main()
