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

Where things are: the settings and each training stage's config in `settings.py`; one method
here per stage of the model, the data and the students (`run` and `upstream` list them in
order); the teacher's stores, calibration and analysis in `teacher_stages.py`; what the
upstream stages hand on (`Upstream`, the calibration in memory) in `upstream.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from first_pl.fileio.run_files import CALIBRATION_FIGURE, TEST_METRICS_FILE
from first_pl.pipeline.files import (
    deep_merge,
    last_checkpoint,
    load_yaml,
    single_file_checkpoint,
    write_splits,
    write_yaml,
)
from first_pl.pipeline.launch import run_first_pl
from first_pl.pipeline.settings import DEFAULT_STUDENTS, PipelineSettings, TrainStage
from first_pl.pipeline.stage_logging import finish_wandb_run, log_report_run, stage_loggers
from first_pl.pipeline.stages import StageResult, StageRunner
from first_pl.pipeline.teacher_stages import analysis_stage, calibrate_stage, extract_stage
from first_pl.pipeline.upstream import Upstream
from first_pl.run_metrics import read_task_metrics

__all__ = ["DEFAULT_STUDENTS", "Pipeline", "TrainStage", "Upstream"]

TEST_DIR = "test"
DISTILL_DATA = "first_pl.data.distill_datamodule.DistillDataModule"
FIGURES = ("n", "acc", "ece", "trust")  # the test figures a training stage records per task


class ReportedRun(NamedTuple):
    """A stage the report shows: its method label, its seed and its record."""

    label: str
    seed: int
    stage: StageResult


@dataclass
class Pipeline(PipelineSettings):
    """The offline FIRST experiment. Paths are relative to the working directory."""

    def run(self) -> Path:
        """Every stage in order (each skipped when done before); the report's path."""
        self.check_files()
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        runner = StageRunner(Path(self.output_dir))
        up = self.upstream(runner)
        runs = [
            ReportedRun("zero-shot teacher", self.seed, up.zero_shot),
            ReportedRun("teacher", self.seed, up.teacher),
            *self.student_stages(runner, up),
        ]
        report = self.report_stage(runner, up, runs)
        summary = Path(self.output_dir) / self.report_name
        summary.write_text(
            Path(report.outputs["report"]).read_text().replace("](", f"]({report.folder.name}/")
        )
        print(f"[{runner.elapsed()}] report: {summary}")
        return summary

    def upstream(self, runner: StageRunner) -> Upstream:
        """Every stage before the students: model, data, zero-shot, teacher, its stores, the
        calibration and the analysis."""
        prepare, data = self.prepare_stage(runner), self.data_stage(runner)
        zero_shot = self.zero_shot_stage(runner, [prepare, data])
        teacher = self.train_and_test(runner, "teacher", self.teacher, [prepare, data], {})
        train_store = extract_stage(self, runner, teacher, "train")
        validation_store = extract_stage(self, runner, teacher, "validation")
        store = validation_store.outputs["store"]
        calibration = calibrate_stage(self, runner, "calibrate", store, [validation_store])
        analysis = analysis_stage(self, runner, teacher, validation_store)
        return Upstream(prepare, data, zero_shot, teacher, train_store, validation_store,
                        calibration, analysis)  # fmt: skip

    def prepare_stage(self, runner: StageRunner) -> StageResult:
        """`prepare`: the teacher's model, downloaded (or found) once for every stage."""
        from first_pl.models import resolve_source

        teacher_yaml = deep_merge(load_yaml(self.teacher.config), self.teacher.overrides)
        model = teacher_yaml["model"]["init_args"]["model"]["name_or_path"]
        return runner.run("prepare", {"model": model}, lambda _: {"model": resolve_source(model)})

    def data_stage(self, runner: StageRunner) -> StageResult:
        """`data`: the task's splits as JSONL, so the exact data of a run can be read."""
        section = self.data_section()
        return runner.run("data", {"data": section}, lambda folder: write_splits(section, folder))

    def zero_shot_stage(self, runner: StageRunner, after: list[StageResult]) -> StageResult:
        """`zero-shot`: the teacher's model tested before fine-tuning (the teacher's config,
        no steps)."""
        zero_shot = TrainStage(self.teacher.config, 0, self.teacher.overrides)
        return self.train_and_test(runner, "zero-shot", zero_shot, after, {})

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
            metrics = read_task_metrics(folder / TEST_DIR / TEST_METRICS_FILE)
            outputs["metrics"] = {t: {k: m[k] for k in FIGURES} for t, m in metrics.items()}
            return outputs

        return runner.run(name, settings, body, after)

    def train_student(
        self,
        runner: StageRunner,
        name: str,
        method: str,
        stage: TrainStage,
        up: Mapping[str, StageResult],
        seed: int | None = None,
    ) -> StageResult:
        """Fine-tune reads the task data; the distillation strategies read the teacher store too,
        and FIRST the calibration. `up` gives the upstream stages by name (an `Upstream`, or the
        sweep's variant with another store or calibration)."""
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

    def student_stages(self, runner: StageRunner, up: Upstream) -> list[ReportedRun]:
        """Every student method once per seed, seeds outermost (as the report lists them)."""
        return [
            ReportedRun(
                method,
                seed,
                self.train_student(
                    runner, self.student_name(method, seed), method, stage, up, seed
                ),
            )
            for seed in self.student_seeds
            for method, stage in self.students.items()
        ]

    def report_stage(
        self, runner: StageRunner, up: Upstream, runs: list[ReportedRun]
    ) -> StageResult:
        """`report`: Table 1, the paired comparisons, the curves and the reliability diagrams of
        `runs`; with `logger: wandb` also a W&B run with the calibration curve beside them."""
        labels, seeds = [r.label for r in runs], [r.seed for r in runs]

        def body(folder: Path) -> dict[str, Any]:
            from first_pl.report import build_report

            path = build_report(
                [str(r.stage.folder) for r in runs],
                str(folder),
                methods=labels,
                seeds=seeds,
                title="FIRST on the offline default",
                converged_acc_tol=self.converged_acc_tol,
                converged_loss_tol=self.converged_loss_tol,
            )
            if self.logger == "wandb":
                curve = Path(up.calibration.path).with_name(CALIBRATION_FIGURE)
                figures = [curve] if curve.is_file() else []
                log_report_run(Path(path), figures, Path(self.output_dir).name)
            return {"report": str(path)}

        settings = {
            "runs": [r.stage.key for r in runs],
            "labels": labels,
            "seeds": seeds,
            "tolerances": [self.converged_acc_tol, self.converged_loss_tol],
        }
        return runner.run("report", settings, body, [r.stage for r in runs])
