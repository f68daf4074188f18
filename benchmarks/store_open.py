"""Opening a teacher store: with the whole-store sha256 check (what every open once did) against
the open alone (chunks checked by their Fletcher-32 as they are read).

    OMP_NUM_THREADS=1 python benchmarks/store_open.py [--positions 1000000] [--k 5] [--repeats 5]

Builds a store of ``--positions`` response positions (10 per example, top-``k``, float16,
gzip: the `first-pl extract` defaults) in a temporary folder, then times both opens,
interleaved, and prints the medians side by side with the CPU they ran on.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import interleaved_seconds  # noqa: E402
from first_pl.data.store import StoreMetadata, TeacherStore, TeacherStoreWriter  # noqa: E402

POSITIONS_PER_EXAMPLE = 10
VOCAB = 49152  # SmolLM2's


def build(path: Path, positions: int, k: int, batch_examples: int = 2048) -> None:
    """A store of random descending top-k rows whose gold is mostly the top-1 token."""
    rng = np.random.default_rng(0)
    meta = StoreMetadata(
        k=k, vocab_size=VOCAB, tokenizer_fingerprint="bench", teacher="bench", task="bench",
        split="train", template_fingerprint="bench", max_length=512,
    )  # fmt: skip
    examples = positions // POSITIONS_PER_EXAMPLE
    with TeacherStoreWriter(path, meta, id_length=12) as writer:
        for start in range(0, examples, batch_examples):
            n = min(batch_examples, examples - start)
            rows = n * POSITIONS_PER_EXAMPLE
            ids = rng.integers(0, VOCAB, size=(rows, k))
            probs = np.sort(rng.dirichlet(np.ones(k + 1), size=rows)[:, :k], axis=1)[:, ::-1]
            gold = np.where(rng.random(rows) < 0.8, ids[:, 0], rng.integers(0, VOCAB, rows))
            names = [f"ex-{i}" for i in range(start, start + n)]
            writer.append(names, ids, probs.astype(np.float16), gold, [POSITIONS_PER_EXAMPLE] * n)


def open_with_sha256(path: Path) -> None:
    """The open every caller once paid: the store, then a sha256 of every dataset's values."""
    store = TeacherStore(path)
    store.verify_checksums()
    store.close()


def open_alone(path: Path) -> None:
    TeacherStore(path).close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "store.h5"
        start = time.perf_counter()
        build(path, args.positions, args.k)
        built = time.perf_counter() - start
        times = interleaved_seconds(
            {"sha256": lambda: open_with_sha256(path), "open": lambda: open_alone(path)},
            args.repeats,
        )
        size = os.path.getsize(path)
    print(
        f"cpu capability={torch.backends.cpu.get_cpu_capability()} cpus={os.cpu_count()} "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}"
    )
    print(
        f"store: {args.positions:,} positions, k={args.k}, float16, gzip, "
        f"{size / 2**20:.1f} MiB, built in {built:.1f} s"
    )
    print(f"open + whole-store sha256 (before): {1e3 * times['sha256']:8.1f} ms")
    print(f"open, chunks checked on read (now): {1e3 * times['open']:8.1f} ms")
    print(f"ratio: {times['sha256'] / times['open']:.1f}x")


if __name__ == "__main__":
    main()
