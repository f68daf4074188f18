"""GPU figures: extraction tokens/s, and FSDP bf16 training tokens/s and model FLOPs utilisation.

Run by `benchmarks/gpu.sh` as two processes, because Lightning's multi-GPU launcher re-runs
the training script once per device:

    python benchmarks/gpu_bench.py extract --store /tmp/s.h5       # teacher top-k, bf16, 1 GPU
    python benchmarks/gpu_bench.py train --store /tmp/s.h5 --peak-tflops 989

Training uses the strategy of `configs/trainer/fsdp.yaml` (FSDPStrategy, one unit and one
activation checkpoint per Llama decoder layer, bf16-mixed, all GPUs) on the FIRST student
(`keep_every`). MFU = 6 * params * tokens / seconds / (peak FLOP/s per GPU * GPUs), the usual
convention (it counts the LM head at every token, though first_pl applies it at response
positions only, and ignores attention FLOPs). Tokens are real (unpadded) input tokens.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lightning as L  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from benchmarks.workbench import Settings, Workbench  # noqa: E402
from first_pl.models import ModelSpec, build_model  # noqa: E402
from first_pl.teacher.extract import extract_shard  # noqa: E402


def workbench(args: argparse.Namespace) -> Workbench:
    return Workbench(
        Settings(
            dtype="bfloat16",
            batch_size=args.batch_size,
            train_size=args.train_size,
            keep_every=args.keep_every,
        )
    )


def extract(args: argparse.Namespace) -> dict[str, Any]:
    """Teacher top-k over the train split on one GPU in bf16 (one warm-up batch first)."""
    bench = workbench(args)
    model = bench.teacher.cuda()
    collate = bench.data.collate_train
    examples = bench.examples
    bench.extract([collate(examples[: args.batch_size])])  # warm-up (CUDA context, kernels)
    Path(args.store).unlink(missing_ok=True)
    torch.cuda.synchronize()
    start = time.perf_counter()
    extract_shard(
        model, examples, collate, args.store, bench.metadata, batch_size=args.batch_size,
        progress=False,
    )  # fmt: skip
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens = sum(len(ex.input_ids) for ex in examples)
    return {"figure": "extraction", "examples": len(examples), "tokens_per_s": tokens / seconds}


def _class(path: str) -> type:
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def fsdp_strategy() -> L.pytorch.strategies.Strategy:
    """The strategy configs/trainer/fsdp.yaml states, built from the file (one source of truth)."""
    config = yaml.safe_load((ROOT / "configs" / "trainer" / "fsdp.yaml").read_text())["trainer"]
    spec = config["strategy"]
    kwargs = dict(spec.get("init_args", {}))
    for key in ("auto_wrap_policy", "activation_checkpointing_policy"):
        if key in kwargs:
            kwargs[key] = {_class(path) for path in kwargs[key]}
    return _class(spec["class_path"])(**kwargs)


class Throughput(L.Callback):
    """Tokens/s and MFU over the steps after `warmup` (global tokens: summed over ranks)."""

    def __init__(self, params: int, peak_flops: float, warmup: int) -> None:
        self.params, self.peak_flops, self.warmup = params, peak_flops, warmup
        self.tokens = 0
        self.start: float | None = None

    def on_train_batch_start(self, trainer: L.Trainer, module: Any, batch: Any, idx: int) -> None:
        if idx == self.warmup:
            torch.cuda.synchronize()
            self.start = time.perf_counter()
        if idx >= self.warmup:
            tokens = batch["attention_mask"].sum().float().to(trainer.strategy.root_device)
            self.tokens += int(trainer.strategy.reduce(tokens, reduce_op="sum"))

    def on_train_end(self, trainer: L.Trainer, module: Any) -> None:
        torch.cuda.synchronize()
        seconds = time.perf_counter() - (self.start or time.perf_counter())
        rate = self.tokens / max(seconds, 1e-9)
        mfu = 6 * self.params * rate / (self.peak_flops * trainer.world_size)
        if trainer.is_global_zero:
            result = {
                "figure": "fsdp_train", "gpus": trainer.world_size, "params": self.params,
                "tokens_per_s": rate, "mfu": mfu,
            }  # fmt: skip
            print(json.dumps(result), flush=True)


def train(args: argparse.Namespace) -> None:
    """FIRST on the extracted store, FSDP over all GPUs, bf16-mixed, `warmup + steps` steps."""
    from first_pl.data.distill_datamodule import DistillDataModule
    from first_pl.methods import FIRST

    bench = workbench(args)
    spec = ModelSpec(keep_every=args.keep_every, dtype="float32")
    params = sum(p.numel() for p in build_model(spec).parameters())
    data = DistillDataModule(store=args.store, **bench.data_kwargs())
    trainer = L.Trainer(
        accelerator="gpu",
        devices=-1,
        precision="bf16-mixed",
        strategy=fsdp_strategy(),
        max_steps=args.warmup + args.steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Throughput(params, args.peak_tflops * 1e12, args.warmup)],
    )
    trainer.fit(FIRST(model=spec, temperature=0.5), datamodule=data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("extract", "train"))
    parser.add_argument("--store", required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--keep-every", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense, per GPU")
    args = parser.parse_args()
    if args.what == "extract":
        bench_result = extract(args)
        print(json.dumps(bench_result), flush=True)
    else:
        train(args)


if __name__ == "__main__":
    main()
