"""`first-pl pipeline`: the whole FIRST experiment end to end, each stage cached by its config.

prepare model -> write the data -> fine-tune the teacher -> extract top-k (train, validation)
-> calibrate c -> train the students (Fine-tune, Distill, Distill w/ LS, FIRST w/ TS) ->
test every model in and out of domain -> report.

Learning curves: with `val_check_interval` N > 0 every training stage validates every N steps
and at its last step on the training task's validation split (only the in-domain task: the
fit config evaluates the training task, the test adds the out-of-domain tasks), and
`CalibrationEvaluation` appends each point to the stage's `val_curve.jsonl`, which the report
draws.

Seeds: with `seeds` each student method is trained once per seed (`student-<method>` for
`seed`, `student-<method>-seed<s>` for the others). The zero-shot model, the data, the teacher,
its stores and the calibration are shared by all seeds: the question is the student method,
so a student's seed changes only what the student itself draws (the order of its batches).

Every training stage writes the complete LightningCLI config it ran into its folder, so any
stage can be rerun by hand with `first-pl fit --config <stage>/config.yaml`. The stage key
hashes that config (and upstream keys), so a changed setting reruns only what depends on it.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from first_pl.fileio.run_files import CALIBRATION_FIGURE, TEST_METRICS_FILE
from first_pl.pipeline.files import (
    deep_merge,
    instantiate_task,
    last_checkpoint,
    load_merged,
    load_yaml,
    run_dir_overrides,
    single_file_checkpoint,
    validation_overrides,
    write_splits,
    write_yaml,
)
from first_pl.pipeline.launch import run_first_pl, trainer_processes
from first_pl.pipeline.stage_logging import (
    check_logger,
    finish_wandb_run,
    log_report_run,
    stage_loggers,
)
from first_pl.pipeline.stages import StageResult, StageRunner
from first_pl.pipeline.teacher_stages import knowledge_stages


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


@dataclass
class Pipeline:
    """The offline FIRST experiment. Paths are relative to the working directory."""

    output_dir: str = "runs/offline"
    # One trainer config, or several merged in order (e.g. cpu.yaml then ddp.yaml). With more
    # than one process each fit / test / extract runs as its own torchrun group (launch.py).
    trainer: str | list[str] = "configs/trainer/cpu.yaml"
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
    # Learning curves: validate every N optimizer steps (0: never during training) on at most
    # `limit_val_batches` batches (a count, or a fraction) of the training task's validation split.
    val_check_interval: int = 0
    limit_val_batches: int | float = 1.0
    # Seeds of the students (each method trained once per seed), a list or "0,1,2"; empty:
    # `seed` only.
    seeds: list[int] | str = field(default_factory=list)
    # Templates of out-of-domain tasks by task name (e.g. {"social_iqa": {"scoring":
    # "option_loglik_norm"}}): only the configs that evaluate those tasks get them; the data
    # config feeds extraction, whose data module knows the training task only.
    ood_templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The report's convergence rule: the last two validation points within these.
    converged_acc_tol: float = 2.0
    converged_loss_tol: float = 0.05
    coverage_positions: int = 400
    threads: int | None = None
    # "csv": each stage's CSV files only; "wandb": W&B runs as well (stage_logging.py).
    logger: str = "csv"

    def __post_init__(self) -> None:
        """Accept stages as mappings too (as they come from a YAML file)."""
        if isinstance(self.teacher, dict):
            self.teacher = TrainStage(**self.teacher)
        self.students = {
            m: TrainStage(**s) if isinstance(s, dict) else s for m, s in self.students.items()
        }
        check_logger(self.logger)
        if self.val_check_interval < 0:
            raise ValueError(f"val_check_interval must be >= 0, got {self.val_check_interval}")
        if isinstance(self.seeds, str):
            try:
                self.seeds = [int(part) for part in self.seeds.split(",") if part.strip()]
            except ValueError:
                raise ValueError(
                    f"seeds must be a list of integers or comma-separated integers, got {self.seeds!r}"
                ) from None
        if len(set(self.student_seeds)) != len(self.student_seeds):
            raise ValueError(f"seeds must not repeat a seed, got {self.seeds}")

    @property
    def student_seeds(self) -> list[int]:
        return list(self.seeds) or [self.seed]

    def student_name(self, method: str, seed: int) -> str:
        """`student-<method>` for the base seed (so a one-seed run's cache is reused)."""
        return f"student-{method}" if seed == self.seed else f"student-{method}-seed{seed}"

    def stage_configs(
        self, stage: TrainStage, folder: Path, seed: int | None = None
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The stage's LightningCLI config, and the test's override when fit validates.

        Validating during fit evaluates only the training task, so the fit config keeps only it
        (and its template); the override gives the test every evaluation task back, with the
        templates of the out-of-domain ones. None when fit does not validate.
        """
        config = deep_merge(load_merged(self.trainer), {"data": self.data_section()})
        config = deep_merge(config, load_yaml(stage.config))
        config = deep_merge(config, run_dir_overrides(folder, stage.max_steps))
        config["seed_everything"] = self.seed if seed is None else seed
        train_task = config["data"]["init_args"]["train_task"]
        config["data"]["init_args"]["eval_tasks"] = [train_task, *self.ood_tasks]
        if self.ood_templates:
            templates = {"task_templates": self.ood_templates}
            config = deep_merge(config, {"data": {"init_args": templates}})
        config = deep_merge(config, stage.overrides)
        if not (self.val_check_interval and stage.max_steps != 0):
            return config, None
        config = deep_merge(
            config, validation_overrides(self.val_check_interval, self.limit_val_batches)
        )
        last = {"class_path": "first_pl.callbacks.LastStepValidation"}
        config["trainer"]["callbacks"] = [*config["trainer"].get("callbacks", []), last]
        init = config["data"]["init_args"]
        test = {"data": {"init_args": {"eval_tasks": init["eval_tasks"]}}}
        init["eval_tasks"] = [train_task]
        if init.get("task_templates"):
            test["data"]["init_args"]["task_templates"] = init["task_templates"]
            own = instantiate_task(train_task).name
            init["task_templates"] = {k: v for k, v in init["task_templates"].items() if k == own}
        return config, test

    def train_and_test(
        self,
        runner: StageRunner,
        name: str,
        stage: TrainStage,
        after: list[StageResult],
        extra: dict[str, Any],
        seed: int | None = None,
    ) -> StageResult:
        """A fit + test stage (test only when `max_steps` is 0): its config is its cache key."""
        preview, test_override = self.stage_configs(stage, Path("<stage>"), seed)
        settings: dict[str, Any] = {
            "config": deep_merge(preview, extra),
            "model_yaml": load_yaml(stage.config),
        }
        if test_override is not None:
            settings["test_tasks"] = test_override

        def body(folder: Path) -> dict[str, Any]:
            group = Path(self.output_dir).name
            fit_config, _ = self.stage_configs(stage, folder, seed)
            fit_config = deep_merge(
                deep_merge(fit_config, extra), stage_loggers(self.logger, folder, "", group, "fit")
            )
            config = write_yaml(folder / "config.yaml", fit_config)
            outputs: dict[str, Any] = {}
            # Test logs go to <stage>/test, so they never replace the training logs.
            test_args = ["test", "--config", str(config)]
            if test_override is not None:
                path = write_yaml(folder / "test_tasks.yaml", test_override)
                test_args += ["--config", str(path)]
            test_logger = stage_loggers(self.logger, folder, TEST_DIR, group, "test")
            test_args += ["--config", str(write_yaml(folder / "test_logger.yaml", test_logger))]
            processes = self.processes()
            if stage.max_steps != 0:
                run_first_pl(["fit", "--config", str(config)], processes, folder / "fit.log")
                finish_wandb_run()
                checkpoint = last_checkpoint(folder)
                outputs["checkpoint"] = str(single_file_checkpoint(checkpoint, folder))
                test_args += ["--ckpt_path", str(checkpoint)]
            run_first_pl(test_args, processes, folder / "test.log")
            finish_wandb_run()
            metrics = json.loads((folder / TEST_DIR / TEST_METRICS_FILE).read_text())["tasks"]
            figures = ("n", "acc", "ece", "trust")
            outputs["metrics"] = {t: {k: m[k] for k in figures} for t, m in metrics.items()}
            return outputs

        return runner.run(name, settings, body, after)

    def processes(self) -> int:
        """Processes per fit / test / extract stage, from the trainer config(s)."""
        return trainer_processes(load_merged(self.trainer).get("trainer", {}), str(self.trainer))

    def data_section(self) -> dict[str, Any]:
        return deep_merge(load_yaml(self.data)["data"], self.data_overrides)

    def upstream(self, runner: StageRunner) -> dict[str, StageResult]:
        """Every stage before the students: model, data, teacher, stores, calibration."""
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
        stages.update(knowledge_stages(self, runner, data_section, teacher))
        return stages

    def train_student(
        self,
        runner: StageRunner,
        name: str,
        method: str,
        stage: TrainStage,
        up: dict[str, StageResult],
        seed: int | None = None,
    ) -> StageResult:
        """Fine-tune reads the task data; the distillation strategies read the teacher store too."""
        if method == "finetune":
            return self.train_and_test(runner, name, stage, [up["prepare"], up["data"]], {}, seed)
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
        return self.train_and_test(runner, name, stage, after, extra, seed)

    def run(self) -> Path:
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        runner = StageRunner(Path(self.output_dir))
        up = self.upstream(runner)
        students, labels, seeds = [], ["zero-shot teacher", "teacher"], [self.seed, self.seed]
        for seed in self.student_seeds:
            for method, stage in self.students.items():
                name = self.student_name(method, seed)
                students.append(self.train_student(runner, name, method, stage, up, seed))
                labels.append(method)
                seeds.append(seed)
        runs = [up["zero-shot"], up["teacher"], *students]

        def report_body(folder: Path) -> dict[str, Any]:
            from first_pl.report import build_report

            path = build_report(
                [str(r.folder) for r in runs],
                str(folder),
                methods=labels,
                seeds=seeds,
                title="FIRST on the offline default",
                converged_acc_tol=self.converged_acc_tol,
                converged_loss_tol=self.converged_loss_tol,
            )
            if self.logger == "wandb":
                curve = Path(up["calibrate"].outputs["calibration"]).with_name(CALIBRATION_FIGURE)
                figures = [curve] if curve.is_file() else []
                log_report_run(Path(path), figures, Path(self.output_dir).name)
            return {"report": str(path)}

        settings = {
            "runs": [r.key for r in runs],
            "labels": labels,
            "seeds": seeds,
            "tolerances": [self.converged_acc_tol, self.converged_loss_tol],
        }
        report = runner.run("report", settings, report_body, runs)
        summary = Path(self.output_dir) / self.report_name
        summary.write_text(
            Path(report.outputs["report"]).read_text().replace("](", f"]({report.folder.name}/")
        )
        print(f"[{runner.elapsed()}] report: {summary}")
        return summary
