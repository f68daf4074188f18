"""`first-pl pipeline`: the whole FIRST experiment end to end, each stage cached by its config.

prepare model -> write the data -> [the shared frozen prefix's states] -> fine-tune the teacher -> extract top-k (train, validation)
-> calibrate c -> [c and delta chosen by short students' validation Trust, `student_choice`]
-> train the students (Fine-tune, Distill, Distill w/ LS, FIRST w/ TS) ->
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

from first_pl.fileio.run_files import CALIBRATION_FIGURE, TEST_METRICS_FILE, metrics_file
from first_pl.metrics.bootstrap import FIGURES
from first_pl.pipeline.files import (
    deep_merge,
    last_checkpoint,
    load_yaml,
    single_file_checkpoint,
    write_splits,
    write_yaml,
)
from first_pl.pipeline.finished_checkpoint import drop_resume_state
from first_pl.pipeline.settings import DEFAULT_STUDENTS, PipelineSettings, TrainStage
from first_pl.pipeline.stage_logging import finish_wandb_run, log_report_run, stage_loggers
from first_pl.pipeline.stages import StageResult, StageRunner
from first_pl.pipeline.student_choice import CHOICES
from first_pl.pipeline.student_choice_stages import choose_by_students
from first_pl.pipeline.teacher_stages import analysis_stage, calibrate_stage, extract_stage
from first_pl.pipeline.upstream import Upstream
from first_pl.report.run_metrics import read_task_metrics
from first_pl.run_folder import OVERWRITE_FLAG
from first_pl.runner import run_first_pl

__all__ = ["DEFAULT_STUDENTS", "Pipeline", "TrainStage", "Upstream"]

TEST_DIR = "test"
DISTILL_DATA = "first_pl.data.distill_datamodule.DistillDataModule"
STAGE_FIGURES = ("n", *FIGURES)  # the test figures a training stage records per task
# The students that read a calibration, and the stage that chose it.
CALIBRATED_BY = {"first": "calibrate", **{spec.method: spec.stage for spec in CHOICES}}


def figures(path: Path) -> dict[str, dict[str, Any]]:
    """`STAGE_FIGURES` of each task of an evaluation's metrics file."""
    return {t: {k: m[k] for k in STAGE_FIGURES} for t, m in read_task_metrics(path).items()}


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
        print(f"[{runner.elapsed()}] report: {summary}", flush=True)
        return summary

    def upstream(self, runner: StageRunner) -> Upstream:
        """Every stage before the students: model, data, zero-shot, teacher, its stores, the
        calibration and the analysis."""
        runner.log(f"[{runner.elapsed()}] every fit / test / extract: {self.devices().reason}")
        prepare, data = self.prepare_stage(runner), self.data_stage(runner)
        base = [prepare, data]
        prefix = self.prefix_stage(runner, base) if self.prefix_layers else None
        base += [prefix] if prefix else []
        zero_shot = self.zero_shot_stage(runner, base)
        teacher = self.train_and_test(runner, "teacher", self.teacher, base, {})
        train_store = extract_stage(self, runner, teacher, "train")
        validation_store = extract_stage(self, runner, teacher, "validation")
        store = validation_store.outputs["store"]
        calibration = calibrate_stage(self, runner, "calibrate", store, [validation_store])
        analysis = analysis_stage(self, runner, teacher, validation_store)
        return Upstream(prepare, data, zero_shot, teacher, train_store, validation_store,
                        calibration, analysis, prefix)  # fmt: skip

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

    def prefix_stage(self, runner: StageRunner, after: list[StageResult]) -> StageResult:
        """`prefix`: the states after the shared frozen prefix of every sequence the job reads
        (`first-pl prefix-cache`); every later stage's model reads them from its store."""
        teacher_yaml = deep_merge(load_yaml(self.teacher.config), self.teacher.overrides)
        model = dict(teacher_yaml["model"]["init_args"]["model"], prefix_layers=self.prefix_layers)
        model.pop("prefix_cache", None)
        settings = {"model": model, "data": self.job_data_section()}

        def body(folder: Path) -> dict[str, Any]:
            output = folder / "prefix.h5"
            config = write_yaml(folder / "prefix.yaml", {**settings, "output": str(output)})
            run_first_pl(["prefix-cache", "--config", str(config)], 1, folder / "prefix.log")
            return {"store": str(output)}

        return runner.run("prefix", settings, body, after)

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
        validate_only: bool = False,
    ) -> StageResult:
        """A fit + test stage (test only when `max_steps` is 0): its config is its cache key.

        With a shared prefix, `after` holds the prefix stage, whose store the model reads.
        `validate_only`: fit validates once, at its last step, on the training task's validation
        split, keeps no checkpoint, and nothing is tested; `metrics` are the validation's."""
        prefix = next((r for r in after if r.name == "prefix"), None)
        store = prefix.outputs["store"] if prefix is not None else None
        extra = deep_merge(extra, self.prefix_overrides(store))
        if validate_only:
            extra = deep_merge(extra, {"trainer": {"enable_checkpointing": False}})
        every = stage.max_steps if validate_only else None
        preview, test_override = self.stage_configs(stage, Path("<stage>"), seed, every)
        settings: dict[str, Any] = {
            "config": deep_merge(preview, extra),
            "model_yaml": load_yaml(stage.config),
        }
        if test_override is not None and not validate_only:
            settings["test_tasks"] = test_override

        def body(folder: Path) -> dict[str, Any]:
            group = Path(self.output_dir).name
            fit_config, _ = self.stage_configs(stage, folder, seed, every)
            fit_config = deep_merge(
                deep_merge(fit_config, extra), stage_loggers(self.logger, folder, "", group, "fit")
            )
            config = write_yaml(folder / "config.yaml", fit_config)
            processes = self.processes()
            if validate_only:
                run_first_pl(["fit", "--config", str(config)], processes, folder / "fit.log")
                finish_wandb_run()
                return {"metrics": figures(folder / metrics_file("val"))}
            outputs: dict[str, Any] = {}
            # Test logs go to <stage>/test, so they never replace the training logs.
            test_args = ["test", "--config", str(config)]
            if test_override is not None:
                path = write_yaml(folder / "test_tasks.yaml", test_override)
                test_args += ["--config", str(path)]
            test_logger = stage_loggers(self.logger, folder, TEST_DIR, group, "test")
            test_args += ["--config", str(write_yaml(folder / "test_logger.yaml", test_logger))]
            if stage.max_steps != 0:
                # The stage folder is the pipeline's: it holds the stage's own files written
                # above and, after a kill, the unfinished attempt, which this fit replaces.
                fit_args = ["fit", "--config", str(config), f"--{OVERWRITE_FLAG}", "true"]
                run_first_pl(fit_args, processes, folder / "fit.log")
                finish_wandb_run()
                checkpoint = last_checkpoint(folder)
                outputs["checkpoint"] = str(single_file_checkpoint(checkpoint, folder))
                test_args += ["--ckpt_path", str(checkpoint)]
            run_first_pl(test_args, processes, folder / "test.log")
            finish_wandb_run()
            outputs["metrics"] = figures(folder / TEST_DIR / TEST_METRICS_FILE)
            if "checkpoint" in outputs:  # tested: nothing resumes this fit again
                drop_resume_state(Path(outputs["checkpoint"]), name)
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
        validate_only: bool = False,
    ) -> StageResult:
        """Fine-tune reads the task data; the distillation methods read the teacher store too,
        FIRST the teacher's calibration and the students of a student choice theirs
        (`CALIBRATED_BY`). `up` gives the upstream stages by name (an `Upstream`, the sweep's
        variant with another store or calibration, or one with the student choices)."""
        if method == "finetune":
            after = [up[n] for n in ("prepare", "data", "prefix") if n in up]
            return self.train_and_test(runner, name, stage, after, {}, seed, validate_only)
        extra: dict[str, Any] = {
            "data": {
                "class_path": DISTILL_DATA,
                "init_args": {"store": up["extract-train"].outputs["store"], "in_memory": True},
            }
        }
        after = [up["extract-train"], *([up["prefix"]] if "prefix" in up else [])]
        if method in CALIBRATED_BY:
            calibration = up[CALIBRATED_BY[method]]
            extra = deep_merge(
                extra, {"model": {"init_args": {"calibration": calibration.outputs["calibration"]}}}
            )
            after.append(calibration)
        return self.train_and_test(runner, name, stage, after, extra, seed, validate_only)

    def student_stages(self, runner: StageRunner, up: Upstream) -> list[ReportedRun]:
        """Every student method once per seed, seeds outermost (as the report lists them); the
        student choices first, when the job has any (`student_choice_stages`)."""
        chosen = {**up, **choose_by_students(self, self.train_student, runner, up)}
        return [
            ReportedRun(
                self.report_label(method),
                seed,
                self.train_student(
                    runner, self.student_name(method, seed), method, stage, chosen, seed
                ),
            )
            for seed in self.student_seeds
            for method, stage in self.all_students().items()
        ]

    def report_stage(
        self, runner: StageRunner, up: Upstream, runs: list[ReportedRun]
    ) -> StageResult:
        """`report`: Table 1, the paired comparisons, the curves and the reliability diagrams of
        `runs`; with `logger: wandb` also a W&B run with the calibration curve beside them."""
        labels, seeds = [r.label for r in runs], [r.seed for r in runs]

        def body(folder: Path) -> dict[str, Any]:
            from first_pl.report import build_report

            report = build_report(
                [str(r.stage.folder) for r in runs],
                str(folder),
                methods=labels,
                seeds=seeds,
                first=self.report_label("first"),
                pairs=[(self.report_label(s.method), self.report_label(s.base))
                       for s, _ in self.choices()],  # fmt: skip
                title="FIRST on the offline default",
                converged_acc_tol=self.converged_acc_tol,
                converged_loss_tol=self.converged_loss_tol,
            )
            if self.logger == "wandb":
                curve = Path(up.calibration.path).with_name(CALIBRATION_FIGURE)
                figures = [curve] if curve.is_file() else []
                log_report_run(report, figures, Path(self.output_dir).name)
            return {"report": str(report.path)}

        settings = {
            "runs": [r.stage.key for r in runs],
            "labels": labels,
            "seeds": seeds,
            "tolerances": [self.converged_acc_tol, self.converged_loss_tol],
        }
        return runner.run("report", settings, body, [r.stage for r in runs])
