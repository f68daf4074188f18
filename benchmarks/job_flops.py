"""The analytic FLOPs of a finished pipeline job, per stage, next to each stage's time.

    python -m benchmarks.job_flops --run runs/offline [--peak-gflops X] [--threads N]

Reads every finished stage of a `first-pl pipeline` output folder (`<stage>-<hash>/stage.json`:
its `seconds`, and the configs the stage wrote: `config.yaml` and `test_tasks.yaml` of a
training or test stage, `prefix.yaml`, `extract.yaml`) and prints, per stage and in total, the
seconds, the padded tokens the model ran, the analytic FLOPs, the achieved GFLOP/s and their
fraction of the CPU's peak (`benchmarks.flop_model`: cores x clock x FLOP/cycle of the ISA and
dtype the stage computed in; `--peak-gflops` replaces it).

What is counted (per-token costs in `benchmarks.flop_model`): the batches the stages run, built
here with the project's own data module, collate functions and batch sizes from each stage's
config, so padding is counted as the kernels compute it:

- `prefix`: the bottom `prefix_layers` over every distinct sequence of the job, in the order and
  batches of `first-pl prefix-cache` (longest first, repeats computed once); later stages read
  the prefix from its store and pay nothing for it;
- a training stage: `max_steps` training batches from the train dataloader in order (cycling
  epochs), 3 x forward for trainable layers and head (`flop_model`), the head at the response
  positions; every validation (each `val_check_interval`, and the last step under
  `LastStepValidation`, on `limit_val_batches` batches of each validation loader, plus sanity
  batches); then the test of the training task's and the other evaluation tasks' test splits;
- evaluation: the layers above the prefix over the prompt rows, the head at one answer position
  per example for token scorings (full-vocabulary confidence), or over the `option_input_ids`
  rows with the head at the option tokens for option-scored tasks;
- `extract-<split>`: the teacher's forward over the split in `extract.yaml`'s batches, the head
  at the response positions; `analysis`: the teacher's coverage forward over the validation split until `positions`
  response positions.

Not counted: Adam's update, the learning-rate schedule, data loading and tokenisation, HDF5
reads and writes (prefix store, teacher store, checkpoints), calibration, the rank calibration
of the analysis and the report (no model forward), process start-up; all of them are in the stages' seconds, which is
why a stage's GFLOP/s is a lower bound on its kernels' rate.

Assumptions, printed where they matter: the training batches come from the train dataloader
seeded with the stage's `seed_everything`; the real run drew its shuffle from the global RNG
after building the model, so its batches held other examples and a little more or less padding.
`precision: auto` is resolved on the machine this script runs on (a stage folder does not
record what it resolved to), and the peak assumes the job ran on this machine with `--threads`
threads (default: the CPUs this process may use).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
from dataclasses import dataclass, field
from functools import cache
from itertools import cycle, islice
from pathlib import Path
from typing import Any

import torch
import yaml

from benchmarks.flop_model import CpuPeak, DecoderShape, this_cpu
from first_pl.data.batch import IGNORE_INDEX
from first_pl.data.option_batch import shared_rows
from first_pl.data.qa_datamodule import QADataModule
from first_pl.fileio.run_files import STAGE_FILE, STALE_MARK
from first_pl.models import ModelSpec
from first_pl.pipeline.files import deep_merge

QA_DATA = "first_pl.data.qa_datamodule.QADataModule"
DISTILL_ONLY = ("store", "in_memory", "check_values")  # DistillDataModule's own arguments


@dataclass(frozen=True)
class Pass:
    """One padded forward: `rows x width` tokens, the LM head at `head` positions."""

    rows: int
    width: int
    head: int


@dataclass
class StageCount:
    """A stage's FLOPs and what produced them."""

    flops: int = 0
    tokens: int = 0
    dtype: str = "float32"
    notes: list[str] = field(default_factory=list)


# --- the data the stages ran -------------------------------------------------------------------


@cache
def _data_module(section_json: str) -> QADataModule:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(QADataModule, "data")
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    return instantiate(parser.parse_object({"data": json.loads(section_json)})).data


def data_module(section: dict[str, Any]) -> QADataModule:
    """The data module a stage's `data` section builds, once per distinct section. A distill
    data module serves the same examples in the same batches as its QADataModule (it adds the
    teacher's rows to them), so it is built as one: its teacher store need not exist."""
    section = copy.deepcopy(section)
    if section.get("class_path") != QA_DATA:
        section["class_path"] = QA_DATA
        for key in DISTILL_ONLY:
            section.get("init_args", {}).pop(key, None)
    return _data_module(json.dumps(section, sort_keys=True))


def train_passes(data: QADataModule, steps: int, seed: int | None) -> tuple[list[Pass], int]:
    """The first `steps` training batches (epochs cycled), and the batches in one epoch."""
    if seed is not None:
        torch.manual_seed(seed)
    loader = data.train_dataloader()
    epoch = len(loader)
    batches = islice((b for _ in cycle([None]) for b in loader), steps) if epoch else []
    return [response_pass(b["input_ids"], b["labels"]) for b in batches], epoch


def response_pass(input_ids: torch.Tensor, labels: torch.Tensor) -> Pass:
    rows, width = input_ids.shape
    return Pass(rows, width, int((labels != IGNORE_INDEX).sum()))


def option_passes(batch: dict[str, torch.Tensor]) -> list[Pass]:
    """An option-scored batch as the evaluation runs it (first_pl.context_cache): each prompt
    once without its last token, then every option's continuation against it, the head at the
    option tokens; the whole rows where the prompts do not split (a one-token prompt). The
    continuations' attention to their prompt is counted at the continuation's width only."""
    ids, mask, labels = batch["option_input_ids"], batch["option_attention_mask"], batch["option_labels"]
    shared = shared_rows(ids, mask, labels, batch["option_context"])
    if shared is None:
        return [response_pass(ids, labels)]
    contexts = Pass(*shared.context_ids.shape, 0)
    start = (labels != IGNORE_INDEX).long().argmax(dim=1)
    width = int((mask.sum(dim=1) - start).max())
    return [contexts, Pass(ids.shape[0], width, int((labels != IGNORE_INDEX).sum()))]


def eval_passes(data: QADataModule, split: str) -> list[list[Pass]]:
    """Per evaluation loader of `split`, its batches as the evaluation runs them."""
    loaders = []
    for loader in data.eval_dataloaders(split):
        passes = []
        for batch in loader:
            if "option_input_ids" in batch:
                passes.extend(option_passes(batch))
            else:
                rows, width = batch["input_ids"].shape
                passes.append(Pass(rows, width, rows))  # one answer position per example
        loaders.append(passes)
    return loaders


def limited(batches: int, limit: int | float | None) -> int:
    """Lightning's `limit_*_batches`: a count, or a fraction of the loader (None: all)."""
    if limit is None:
        return batches
    if isinstance(limit, float):
        return batches if limit >= 1.0 else int(batches * limit)
    return min(batches, int(limit))


# --- the models --------------------------------------------------------------------------------


@cache
def source_shape(name_or_path: str) -> DecoderShape:
    from transformers import AutoConfig

    from first_pl.models import resolve_source

    return DecoderShape.of(AutoConfig.from_pretrained(resolve_source(name_or_path)))


@dataclass(frozen=True)
class ModelCost:
    """The FLOPs of a stage's model: `layers` decoder layers run (above any prefix), the bottom
    `frozen` of them without gradients, and whether the head trains."""

    shape: DecoderShape
    layers: int
    frozen: int
    head_trains: bool
    lora: bool

    @classmethod
    def of(cls, spec: ModelSpec) -> ModelCost:
        from first_pl.layers import keep_indices
        from first_pl.prefix.split import upper_layers

        shape = source_shape(spec.name_or_path)
        if spec.prefix_layers:
            layers = len(upper_layers(shape.layers, spec.prefix_layers, spec.keep_layers))
            head_trains = True  # untied from the frozen embeddings (first_pl.prefix.split)
        else:
            layers = len(keep_indices(shape.layers, spec.keep_every, spec.keep_layers))
            head_trains = not spec.freeze_embeddings
        return cls(shape, layers, spec.freeze_layers, head_trains, spec.lora is not None)

    def forward(self, p: Pass) -> int:
        return self.layers * self.shape.layer_forward(p.rows, p.width) + self.shape.head_forward(p.head)

    def training(self, p: Pass) -> int:
        """A training step: 3 x forward where weights train, 2 x where only activation
        gradients pass (a frozen head; every weight under LoRA, whose adapters are not
        counted), 1 x for frozen bottom layers that no gradient reaches."""
        layer = self.shape.layer_forward(p.rows, p.width)
        head = self.shape.head_forward(p.head)
        if self.lora:
            return 2 * (self.layers - self.frozen) * layer + self.frozen * layer + 2 * head
        trained = self.layers - self.frozen
        return 3 * trained * layer + self.frozen * layer + (3 if self.head_trains else 2) * head


def compute_dtype(precision: Any, model_dtype: str, accelerator: str) -> tuple[str, str]:
    """The dtype a stage's matmuls ran in, and how `precision` was read."""
    from first_pl.precision import resolve_precision

    resolved = resolve_precision(str(precision), accelerator)
    how = f"{precision} -> {resolved.precision} here" if str(precision) == "auto" else str(precision)
    if str(resolved.precision).startswith("bf16") or model_dtype == "bfloat16":
        return "bfloat16", how
    return "float32", how


# --- the stages --------------------------------------------------------------------------------


def training_stage(folder: Path, record: dict[str, Any]) -> StageCount:
    """A fit (+ validation) and/or test stage, from the config it wrote."""
    path = folder / "config.yaml"
    config = yaml.safe_load(path.read_text()) if path.is_file() else record["settings"]["config"]
    trainer = config.get("trainer") or {}
    spec = ModelSpec(**config["model"]["init_args"]["model"])
    model = ModelCost.of(spec)
    count = StageCount()
    count.dtype, how = compute_dtype(trainer.get("precision", "32-true"), spec.dtype,
                                     str(trainer.get("accelerator", "auto")))  # fmt: skip
    count.notes.append(f"{model.layers} layers + head, precision {how}")
    data = data_module(config["data"])
    steps = int(trainer.get("max_steps", -1))
    if steps > 0:
        train, epoch = train_passes(data, steps, config.get("seed_everything"))
        add(count, [model.training(p) for p in train], train)
        validations, sanity = validation_points(trainer, steps, epoch)
        limit = trainer.get("limit_val_batches", 1.0)
        if validations or sanity:
            for loader in eval_passes(data, "validation"):
                batches = loader[: limited(len(loader), limit)]
                runs = batches * validations + loader[:sanity]
                add(count, [model.forward(p) for p in runs], runs)
        count.notes.append(f"{steps} steps, {validations} validations")
    if steps == 0 or "checkpoint" in record.get("outputs", {}):  # tested (validate-only: not)
        tasks = folder / "test_tasks.yaml"
        test_config = deep_merge(config, yaml.safe_load(tasks.read_text())) if tasks.is_file() else config
        limit = trainer.get("limit_test_batches", 1.0)
        for loader in eval_passes(data_module(test_config["data"]), "test"):
            runs = loader[: limited(len(loader), limit)]
            add(count, [model.forward(p) for p in runs], runs)
    return count


def validation_points(trainer: dict[str, Any], steps: int, epoch: int) -> tuple[int, int]:
    """How many validations a fit of `steps` steps runs, and its sanity-check batches."""
    if trainer.get("limit_val_batches") == 0 or not epoch:
        return 0, 0
    interval = trainer.get("val_check_interval")
    interval = 1.0 if interval is None else interval
    every_epochs = trainer.get("check_val_every_n_epoch", 1)
    if isinstance(interval, int) and every_epochs is None:
        points = set(range(interval, steps + 1, interval))
    else:
        within = interval if isinstance(interval, int) else max(1, int(epoch * interval))
        every_epochs = every_epochs or 1
        points = {
            e * epoch + b
            for e in range(math.ceil(steps / epoch))
            if (e + 1) % every_epochs == 0
            for b in range(within, epoch + 1, within)
            if e * epoch + b <= steps
        }
    callbacks = [str(c.get("class_path", "")) for c in trainer.get("callbacks") or [] if isinstance(c, dict)]
    if any(c.endswith("LastStepValidation") for c in callbacks):
        points.add(steps)
    sanity = trainer.get("num_sanity_val_steps")
    sanity = 2 if sanity is None else int(sanity)  # Lightning's default
    return len(points), (10**9 if sanity < 0 else sanity)


def prefix_stage(folder: Path) -> StageCount:
    """`first-pl prefix-cache`: each distinct sequence once, in its batches and order."""
    from first_pl.commands.prefix_cache import job_examples

    settings = yaml.safe_load((folder / "prefix.yaml").read_text())
    spec = ModelSpec(**settings["model"])
    shape = source_shape(spec.name_or_path)
    data = data_module(settings["data"])
    batch_size = int(settings.get("batch_size", 32))
    count = StageCount(dtype=spec.dtype, notes=[f"{spec.prefix_layers} prefix layers, {spec.dtype}"])
    seen: set[tuple[int, ...]] = set()
    for group in job_examples(data):
        group = sorted(group, key=lambda e: -len(e.input_ids))
        for start in range(0, len(group), batch_size):
            batch = data.collate_eval(group[start : start + batch_size])
            if "option_input_ids" in batch:  # the option rows, each prompt once
                passes = option_passes(batch)
                for p in passes:
                    add(count, [spec.prefix_layers * shape.layer_forward(p.rows, p.width)], [Pass(p.rows, p.width, 0)])
                continue
            ids, mask = batch["input_ids"], batch["attention_mask"]
            for row in range(0, ids.shape[0], batch_size):
                rows = [tuple(r[: int(m.sum())].tolist()) for r, m in zip(ids[row : row + batch_size],
                                                                          mask[row : row + batch_size], strict=True)]  # fmt: skip
                missing = {r for r in rows if r not in seen}
                seen |= missing
                if missing:
                    p = Pass(len(missing), max(len(r) for r in missing), 0)
                    add(count, [spec.prefix_layers * shape.layer_forward(p.rows, p.width)], [p])
    return count


def teacher_stage(folder: Path) -> StageCount:
    """`first-pl extract` (`extract.yaml`): the teacher over one split, unshuffled, the head at
    the response positions, under its `precision`."""
    settings = yaml.safe_load((folder / "extract.yaml").read_text())
    teacher = next(
        (p for p in Path(settings["teacher"]).parents if (p / "config.yaml").is_file()), None
    )
    if teacher is None:
        raise FileNotFoundError(f"{folder / 'extract.yaml'}: no config.yaml above its teacher {settings['teacher']}")
    precision = settings.get("precision", "auto")
    loader_settings = (settings["data"], settings["split"], int(settings.get("batch_size", 8)))
    return teacher_forward(teacher, precision, str(settings.get("accelerator", "auto")), loader_settings, None)


def analysis_stage(folder: Path, record: dict[str, Any]) -> StageCount:
    """The pipeline's `analysis` (first_pl.pipeline.teacher_stages): the teacher's coverage
    forward over the validation split in batches of `COVERAGE_BATCH_SIZE`, in the model's dtype
    (no autocast), until `positions` response positions are seen."""
    from first_pl.teacher.analysis import COVERAGE_BATCH_SIZE

    run = (record.get("upstream_runs") or {}).get("teacher")
    teacher = next(
        (p.parent for p in folder.parent.glob(f"*/{STAGE_FILE}") if run and json.loads(p.read_text()).get("run_id") == run),
        None,
    )
    if teacher is None:
        raise FileNotFoundError(f"{folder}: no finished teacher stage beside it")
    data = yaml.safe_load((teacher / "config.yaml").read_text())["data"]
    budget = record["settings"]["positions"]
    return teacher_forward(teacher, "32-true", "auto", (data, "validation", COVERAGE_BATCH_SIZE), budget)


def teacher_forward(
    teacher: Path, precision: str, accelerator: str, loader: tuple[dict, str, int], budget: int | None
) -> StageCount:
    """The teacher of the stage folder `teacher` over `loader` (data section, split, batch size),
    the head at the response positions, until `budget` response positions (None: all)."""
    config = yaml.safe_load((teacher / "config.yaml").read_text())
    spec = ModelSpec(**config["model"]["init_args"]["model"])
    model = ModelCost.of(spec)
    count = StageCount()
    count.dtype, how = compute_dtype(precision, spec.dtype, accelerator)
    count.notes.append(f"{model.layers} layers + head, precision {how}")
    section, split, batch_size = loader
    passes, seen = [], 0
    for batch in data_module(section).split_loader(split, batch_size):
        if budget is not None and seen >= budget:
            break
        passes.append(response_pass(batch["input_ids"], batch["labels"]))
        seen += passes[-1].head
    add(count, [model.forward(p) for p in passes], passes)
    return count


def add(count: StageCount, flops: list[int], passes: list[Pass]) -> None:
    count.flops += sum(flops)
    count.tokens += sum(p.rows * p.width for p in passes)


def count_stage(folder: Path, record: dict[str, Any]) -> StageCount | None:
    """The stage's FLOPs, or None for a stage that runs no model."""
    if (folder / "prefix.yaml").is_file():
        return prefix_stage(folder)
    if (folder / "extract.yaml").is_file():
        return teacher_stage(folder)
    if record.get("name") == "analysis":
        return analysis_stage(folder, record)
    if isinstance(record.get("settings", {}).get("config"), dict):
        return training_stage(folder, record)
    return None


# --- the table ---------------------------------------------------------------------------------


def stages(root: Path) -> tuple[list[tuple[Path, dict[str, Any]]], list[Path]]:
    """Finished stages in the order they finished, and unfinished stage folders."""
    done, unfinished = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and STALE_MARK not in p.name):
        record = folder / STAGE_FILE
        if record.is_file():
            done.append((folder, json.loads(record.read_text())))
        else:
            unfinished.append(folder)
    done.sort(key=lambda item: (item[0] / STAGE_FILE).stat().st_mtime)
    return done, unfinished


def report(root: Path, cpu: CpuPeak, peak_gflops: float | None) -> str:
    """The per-stage table and the total."""
    lines = [f"CPU capability {cpu.capability} ({', '.join(sorted(cpu.flags & {'amx_bf16', 'avx512_bf16'})) or 'no native bf16'})"]
    for dtype in ("float32", "bfloat16"):
        peak, how = cpu.gflops(dtype)
        lines.append(f"peak {dtype}: " + (f"{how} = {peak:.1f} GFLOP/s" if peak else how))
    if peak_gflops:
        lines.append(f"peak used: --peak-gflops {peak_gflops:g} for every stage")
    header = f"{'stage':<34} {'dtype':>8} {'seconds':>9} {'tokens':>11} {'GFLOP':>10} {'GFLOP/s':>8} {'peak':>7} {'%peak':>6}"
    lines += ["", header, "-" * len(header)]
    done, unfinished = stages(root)
    total_s = total_flops = peak_s = 0.0
    notes = []
    for folder, record in done:
        seconds = float(record.get("seconds", 0.0))
        count = count_stage(folder, record)
        total_s += seconds
        if count is None:
            lines.append(f"{folder.name:<34} {'-':>8} {seconds:>9.1f} {'-':>11} {'-':>10}")
            continue
        peak = peak_gflops or cpu.gflops(count.dtype)[0]
        rate = count.flops / seconds / 1e9 if seconds else float("nan")
        total_flops += count.flops
        peak_s += seconds * (peak or float("nan"))
        share = f"{100 * rate / peak:>5.1f}%" if peak else f"{'-':>6}"
        lines.append(
            f"{folder.name:<34} {count.dtype:>8} {seconds:>9.1f} {count.tokens:>11,d} "
            f"{count.flops / 1e9:>10.2f} {rate:>8.2f} {peak or 0:>7.1f} {share}"
        )
        notes.append(f"  {folder.name}: {'; '.join(count.notes)}")
    rate = total_flops / total_s / 1e9 if total_s else float("nan")
    share = f"{100 * total_flops / 1e9 / peak_s:>5.1f}%" if peak_s == peak_s and peak_s else f"{'-':>6}"
    lines += ["-" * len(header),
              f"{'total':<34} {'':>8} {total_s:>9.1f} {'':>11} {total_flops / 1e9:>10.2f} {rate:>8.2f} {'':>7} {share}",
              "", "stages:", *notes]  # fmt: skip
    if unfinished:
        lines.append("unfinished (no stage.json, not counted): " + ", ".join(p.name for p in unfinished))
    lines.append(
        "%peak of the total: FLOPs over the sum of each stage's seconds x its peak. Not counted: "
        "Adam's update, data loading, HDF5 reads/writes, calibration, report, start-up."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a pipeline output folder (runs/offline)")
    parser.add_argument("--peak-gflops", type=float, default=None,
                        help="the CPU's peak GFLOP/s, for every stage (default: derived per ISA and dtype)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None,
                        help="cores the job used (default: the CPUs this process may use)")  # fmt: skip
    args = parser.parse_args(argv)
    root = Path(args.run)
    if not root.is_dir():
        parser.error(f"--run {root} is not a folder")
    print(report(root, this_cpu(args.threads), args.peak_gflops))


if __name__ == "__main__":
    main()
