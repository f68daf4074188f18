"""A finished training stage keeps its model's weights, not its optimiser.

While a stage trains, its checkpoint must hold Adam's two moments and the schedule so that a
killed run resumes where it stopped. Once the stage has also been tested, nothing resumes it
again: later stages only read its weights (extraction, the analysis, `ask`, `export`). The Adam
state is two more copies of every trainable weight (a 135M-parameter teacher's checkpoint is
1.6 GB with it, 0.5 GB without), so the pipeline rewrites a finished stage's checkpoint without
it. The rewrite is atomic (a crash leaves the old, larger file, still valid), keeps every other
entry (weights, hyper-parameters, the data record, loops and callback state) and loads through
the same weights-only allow-list as any checkpoint. A fit resumed from it is refused by
Lightning with its own message (the checkpoint "contains only the model").
"""

from __future__ import annotations

from pathlib import Path

import torch

from first_pl.fileio.atomic import atomic_write
from first_pl.methods.checkpoint import load_checkpoint_file

# The entries only a resumed fit reads: the optimisers' state and the learning-rate schedules.
RESUME_ONLY_KEYS = ("optimizer_states", "lr_schedulers")


def drop_resume_state(path: Path, stage: str) -> int:
    """Rewrite the single-file checkpoint at `path` without `RESUME_ONLY_KEYS` and say so for
    `stage`; returns the bytes saved (0 when it had none: nothing is rewritten)."""
    checkpoint = load_checkpoint_file(path)
    if not any(key in checkpoint for key in RESUME_ONLY_KEYS):
        return 0
    before = path.stat().st_size
    for key in RESUME_ONLY_KEYS:
        checkpoint.pop(key, None)
    atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))
    saved = before - path.stat().st_size
    print(f"{stage}: kept the checkpoint's weights only ({saved / 2**20:.0f} MiB of optimiser state dropped)", flush=True)
    return saved
