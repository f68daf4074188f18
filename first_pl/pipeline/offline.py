"""`first-pl pipeline`: the whole FIRST experiment end to end, each stage cached by its config.

prepare model -> write the data -> fine-tune the teacher -> extract top-k (train, validation)
-> calibrate c -> train the students (Fine-tune, Distill, Distill w/ LS, FIRST w/ TS) ->
test every model in and out of domain -> report.

Every training stage writes the complete LightningCLI config it ran into its folder, so any
stage can be rerun by hand with `first-pl fit --config <stage>/config.yaml`. The stage key
hashes that config (and upstream keys), so a changed setting reruns only what depends on it.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from first_pl.pipeline.stages import StageResult, StageRunner


@dataclass
class TrainStage:
    """One model to train: its model config (a `model:` YAML) and its budget."""

    config: str
    max_steps: int = 100
    overrides: dict[str, Any] = field(default_factory=dict)


DEFAULT_STUDENTS = {
    "finetune": TrainStage("configs/model/student_finetune.yaml"),
    "distill": TrainStage("configs/model/distill.yaml"),
    "ls_distill": TrainStage("configs/model/label_smoothing_distill.yaml"),
    "first": TrainStage("configs/model/first.yaml"),
}
TEST_DIR = "test"
DISTILL_DATA = "first_pl.data.distill_datamodule.DistillDataModule"


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pipeline config refers to {path}, which does not exist")
    return yaml.safe_load(path.read_text()) or {}


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`update` over `base`, recursively for mappings (lists and scalars are replaced)."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def write_yaml(path: Path, value: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(value, sort_keys=False))
    return path


def last_checkpoint(folder: Path) -> Path:
    found = sorted((folder / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"training stage {folder} wrote no checkpoint")
    return found[-1]


def run_dir_overrides(folder: Path, max_steps: int) -> dict[str, Any]:
    """Trainer settings every training stage shares: its folder, its budget, no mid-run eval."""
    return {
        "trainer": {
            "max_steps": max_steps,
            "max_epochs": -1,
            "limit_val_batches": 0,
            "num_sanity_val_steps": 0,
            "default_root_dir": str(folder),
            "logger": {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(folder), "name": "", "version": ""},
            },
        }
    }


@dataclass
class Pipeline:
    """The offline FIRST experiment. Paths are relative to the working directory."""

    output_dir: str = "runs/offline"
    trainer: str = "configs/trainer/cpu.yaml"
    data: str = "configs/data/generated.yaml"
    data_overrides: dict[str, Any] = field(default_factory=dict)
    ood_tasks: list[dict[str, Any]] = field(default_factory=list)
    teacher: TrainStage = field(
        default_factory=lambda: TrainStage("configs/model/finetune_smollm2.yaml", 150)
    )
    students: dict[str, TrainStage] = field(default_factory=lambda: copy.deepcopy(DEFAULT_STUDENTS))
    seed: int = 0
    extract_batch_size: int = 32
    calibrate_objective: str = "ece"
    # Choose c on the answer positions only (what the multiple-choice ECE measures) instead of
    # every response position (answer, word continuations, EOS: the paper's token level).
    calibrate_answer_only: bool = False
    # The summary written in output_dir: variants sharing the cache keep their own reports.
    report_name: str = "report.md"
    coverage_positions: int = 400
    threads: int | None = None

    def __post_init__(self) -> None:
        """Accept stages as mappings too (as they come from a YAML file)."""
        if isinstance(self.teacher, dict):
            self.teacher = TrainStage(**self.teacher)
        self.students = {
            m: TrainStage(**s) if isinstance(s, dict) else s for m, s in self.students.items()
        }

    def base_config(self, stage: TrainStage, folder: Path) -> dict[str, Any]:
        config = deep_merge(load_yaml(self.trainer), {"data": self.data_section()})
        config = deep_merge(config, load_yaml(stage.config))
        config = deep_merge(config, run_dir_overrides(folder, stage.max_steps))
        config["seed_everything"] = self.seed
        train_task = config["data"]["init_args"]["train_task"]
        config["data"]["init_args"]["eval_tasks"] = [train_task, *self.ood_tasks]
        return deep_merge(config, stage.overrides)

    def train_and_test(
        self,
        runner: StageRunner,
        name: str,
        stage: TrainStage,
        after: list[StageResult],
        extra: dict[str, Any],
    ) -> StageResult:
        """A fit + test stage (test only when `max_steps` is 0): its config is its cache key."""
        from first_pl.cli import main

        preview = deep_merge(self.base_config(stage, Path("<stage>")), extra)

        def body(folder: Path) -> dict[str, Any]:
            config = write_yaml(
                folder / "config.yaml", deep_merge(self.base_config(stage, folder), extra)
            )
            outputs: dict[str, Any] = {}
            # Test logs go to <stage>/test, so they never replace the training logs.
            test_args = [
                "test",
                "--config",
                str(config),
                "--trainer.logger.init_args.version",
                TEST_DIR,
            ]
            if stage.max_steps != 0:
                main(["fit", "--config", str(config)])
                outputs["checkpoint"] = str(last_checkpoint(folder))
                test_args += ["--ckpt_path", outputs["checkpoint"]]
            main(test_args)
            metrics = json.loads((folder / TEST_DIR / "metrics_test.json").read_text())["tasks"]
            figures = ("n", "acc", "ece", "trust")
            outputs["metrics"] = {t: {k: m[k] for k in figures} for t, m in metrics.items()}
            return outputs

        return runner.run(
            name, {"config": preview, "model_yaml": load_yaml(stage.config)}, body, after
        )

    def data_section(self) -> dict[str, Any]:
        return deep_merge(load_yaml(self.data)["data"], self.data_overrides)

    def upstream(self, runner: StageRunner) -> dict[str, StageResult]:
        """Every stage before the students: model, data, teacher, stores, calibration."""
        from first_pl.cli import main
        from first_pl.models import resolve_source

        teacher_yaml = deep_merge(load_yaml(self.teacher.config), self.teacher.overrides)
        teacher_model = teacher_yaml["model"]["init_args"]["model"]["name_or_path"]
        prepare = runner.run(
            "prepare",
            {"model": teacher_model},
            lambda folder: {"model": resolve_source(teacher_model)},
        )
        data_section = self.data_section()
        data = runner.run(
            "data", {"data": data_section}, lambda folder: write_splits(data_section, folder)
        )
        stages = {"prepare": prepare, "data": data}
        zero_shot = TrainStage(self.teacher.config, 0, self.teacher.overrides)
        stages["zero-shot"] = self.train_and_test(
            runner, "zero-shot", zero_shot, [prepare, data], {}
        )
        teacher = self.train_and_test(runner, "teacher", self.teacher, [prepare, data], {})
        stages["teacher"] = teacher
        for split in ("train", "validation"):

            def extract_body(folder: Path, split: str = split) -> dict[str, Any]:
                output = folder / f"teacher_{split}.h5"
                settings = {
                    "data": data_section,
                    "teacher": teacher.outputs["checkpoint"],
                    "output": str(output),
                    "split": split,
                    "batch_size": self.extract_batch_size,
                }
                main(["extract", "--config", str(write_yaml(folder / "extract.yaml", settings))])
                return {"store": str(output)}

            settings = {"data": data_section, "split": split, "batch": self.extract_batch_size}
            stages[f"extract-{split}"] = runner.run(
                f"extract-{split}", settings, extract_body, [teacher]
            )
        validation_store = stages["extract-validation"].outputs["store"]

        def calibrate_body(folder: Path) -> dict[str, Any]:
            main(
                [
                    "calibrate",
                    "--store",
                    validation_store,
                    "--output_dir",
                    str(folder),
                    "--objective",
                    self.calibrate_objective,
                    "--answer_only",
                    str(self.calibrate_answer_only).lower(),
                ]
            )
            result = json.loads((folder / "calibration.json").read_text())
            return {
                "calibration": str(folder / "calibration.json"),
                "temperature": result["temperature"],
            }

        stages["calibrate"] = runner.run(
            "calibrate",
            {"objective": self.calibrate_objective, "answer_only": self.calibrate_answer_only},
            calibrate_body,
            [stages["extract-validation"]],
        )

        def analysis_body(folder: Path) -> dict[str, Any]:
            """Figures 2 and 3 of the paper for this teacher, on the validation split."""
            settings = {
                "data": data_section,
                "teacher": teacher.outputs["checkpoint"],
                "output_dir": str(folder),
                "split": "validation",
                "max_positions": self.coverage_positions,
            }
            main(["coverage", "--config", str(write_yaml(folder / "coverage.yaml", settings))])
            main(["rank-calibration", "--store", validation_store, "--output_dir", str(folder)])
            return {
                "coverage": str(folder / "coverage.json"),
                "rank_calibration": str(folder / "rank_calibration.json"),
            }

        stages["analysis"] = runner.run(
            "analysis",
            {"positions": self.coverage_positions},
            analysis_body,
            [teacher, stages["extract-validation"]],
        )
        return stages

    def train_student(
        self,
        runner: StageRunner,
        name: str,
        method: str,
        stage: TrainStage,
        up: dict[str, StageResult],
    ) -> StageResult:
        """Fine-tune reads the task data; the distillation strategies read the teacher store too."""
        if method == "finetune":
            return self.train_and_test(runner, name, stage, [up["prepare"], up["data"]], {})
        extra: dict[str, Any] = {
            "data": {
                "class_path": DISTILL_DATA,
                "init_args": {"store": up["extract-train"].outputs["store"], "in_memory": True},
            }
        }
        after = [up["extract-train"]]
        if method == "first":
            extra = deep_merge(
                extra,
                {"model": {"init_args": {"calibration": up["calibrate"].outputs["calibration"]}}},
            )
            after.append(up["calibrate"])
        return self.train_and_test(runner, name, stage, after, extra)

    def run(self) -> Path:
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        runner = StageRunner(Path(self.output_dir))
        up = self.upstream(runner)
        students = [
            self.train_student(runner, f"student-{m}", m, stage, up)
            for m, stage in self.students.items()
        ]
        runs = [up["zero-shot"], up["teacher"], *students]

        def report_body(folder: Path) -> dict[str, Any]:
            from first_pl.report import build_report

            labels = ["zero-shot teacher", "teacher", *self.students]
            path = build_report(
                [str(r.folder) for r in runs],
                str(folder),
                methods=labels,
                title="FIRST on the offline default",
            )
            return {"report": str(path)}

        report = runner.run("report", {"runs": [r.key for r in runs]}, report_body, runs)
        summary = Path(self.output_dir) / self.report_name
        summary.write_text(
            Path(report.outputs["report"]).read_text().replace("](", f"]({report.folder.name}/")
        )
        print(f"[{runner.elapsed()}] report: {summary}")
        return summary


def write_splits(data_section: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Write the task's examples to JSONL so the exact data of a run can be read and shared."""
    from jsonargparse import ArgumentParser

    from first_pl.tasks.base import Task

    parser = ArgumentParser()
    parser.add_subclass_arguments(Task, "task")
    task = parser.instantiate_classes(
        parser.parse_object({"task": data_section["init_args"]["train_task"]})
    ).task
    counts = {}
    for split in ("train", "validation", "test"):
        examples = task.load(split)
        with (folder / f"{split}.jsonl").open("w") as f:
            for example in examples:
                f.write(json.dumps(asdict(example)) + "\n")
        counts[split] = len(examples)
    return {"counts": counts}
