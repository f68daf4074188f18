"""The settings of the offline FIRST experiment, and the LightningCLI config each of its
training stages runs.

Kept apart from the stages themselves (`pipeline.py`: what runs, in which order, cached how), so a
reader sees in one place everything a run can be told: the trainer, data, teacher and student
configs, the out-of-domain tasks, the seeds, the learning curves and the logger.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from first_pl.devices import DeviceChoice
from first_pl.fileio.output_path import check_output_path
from first_pl.pipeline.files import (
    ConfigFileError,
    deep_merge,
    instantiate_task,
    load_merged,
    load_yaml,
    run_dir_overrides,
    validation_overrides,
)
from first_pl.pipeline.launch import stage_devices
from first_pl.pipeline.stage_logging import check_logger
from first_pl.pipeline.student_choice import (
    CHOICES,
    ChoiceSpec,
    StudentChoice,
    check_student_choice,
)
from first_pl.teacher.parameter_search import OBJECTIVES


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


@dataclass
class PipelineSettings:
    """What the experiment runs; paths are relative to the working directory."""

    output_dir: str = "runs/offline"
    # One trainer config, or several merged in order (e.g. cpu.yaml then ddp.yaml). With more
    # than one process each fit / test / extract runs as its own torchrun group (runner.py).
    trainer: str | list[str] = "configs/trainer/auto.yaml"
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
    # The frozen prefix every model of the job shares (first_pl.prefix): the teacher's source's
    # embeddings and first n decoder layers, whose states the `prefix` stage computes once for
    # every sequence of the job; each model trains and runs only its layers above. 0: no prefix.
    prefix_layers: int = 0
    # Choose c and delta by the students' own validation Trust (StudentChoice); None: only by
    # the teacher's validation objective (`calibrate_objective`).
    student_choice: StudentChoice | None = None
    # "csv": each stage's CSV files only; "wandb": W&B runs as well (stage_logging.py).
    logger: str = "csv"

    def __post_init__(self) -> None:
        """Accept stages as mappings too (as they come from a YAML file)."""
        if isinstance(self.teacher, dict):
            self.teacher = TrainStage(**self.teacher)
        self.students = {
            m: TrainStage(**s) if isinstance(s, dict) else s for m, s in self.students.items()
        }
        if isinstance(self.student_choice, dict):
            self.student_choice = StudentChoice(**self.student_choice)
        check_logger(self.logger)
        check_student_choice(self.student_choice, self.students)
        if self.prefix_layers < 0:
            raise ValueError(f"prefix_layers must be >= 0, got {self.prefix_layers}")
        self.check_values()
        if isinstance(self.seeds, str):
            try:
                self.seeds = [int(part) for part in self.seeds.split(",") if part.strip()]
            except ValueError:
                raise ValueError(
                    f"seeds must be a list of integers or comma-separated integers, got {self.seeds!r}"
                ) from None
        if len(set(self.student_seeds)) != len(self.student_seeds):
            raise ValueError(f"seeds must not repeat a seed, got {self.seeds}")

    def check_values(self) -> None:
        """Refuse an option out of its range when the config is read: the pipeline would
        otherwise meet it only at the stage that uses it, after the teacher's training."""
        if self.calibrate_objective not in OBJECTIVES:
            raise ValueError(
                f"calibrate_objective must be one of {OBJECTIVES}, got {self.calibrate_objective!r}"
            )
        # -1: no step limit, the trainer's max_epochs is the budget (the Table-1 configs)
        budgets = {"teacher.max_steps": (self.teacher.max_steps, 1)}
        budgets.update({f"students.{m}.max_steps": (s.max_steps, 0) for m, s in self.students.items()})
        for option, (value, low) in budgets.items():
            if value != -1 and not value >= low:
                raise ValueError(f"{option} must be >= {low}, or -1 (max_epochs decides), got {value}")
        for option, (value, low) in {
            "val_check_interval": (self.val_check_interval, 0),
            "extract_batch_size": (self.extract_batch_size, 1),
            "coverage_positions": (self.coverage_positions, 1),
            "converged_acc_tol": (self.converged_acc_tol, 0),
            "converged_loss_tol": (self.converged_loss_tol, 0),
        }.items():
            if not value >= low:  # also rejects NaN
                raise ValueError(f"{option} must be >= {low}, got {value}")
        if not self.limit_val_batches > 0:
            raise ValueError(f"limit_val_batches must be > 0, got {self.limit_val_batches}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 (or unset: torch's default), got {self.threads}")

    def check_files(self) -> None:
        """Read every config file, build every task the stages will use and check that
        `output_dir` can be written, before the first stage runs: a misspelt file or task must
        cost seconds, not the teacher's training."""
        check_output_path(self.output_dir, "output_dir", folder=True)
        load_merged(self.trainer)
        if "data" not in load_yaml(self.data):
            raise ConfigFileError(f"data config {self.data} has no 'data' section")
        stages = {"teacher": self.teacher, **{f"students.{m}": s for m, s in self.students.items()}}
        for option, stage in stages.items():
            if "model" not in load_yaml(stage.config):
                raise ConfigFileError(f"{option}.config {stage.config} has no 'model' section")
        train_task = self.data_section()["init_args"]["train_task"]
        names = [instantiate_task(train_task, "data's train_task").name]
        names += [instantiate_task(t, f"ood_tasks[{i}]").name for i, t in enumerate(self.ood_tasks)]
        unknown = sorted(set(self.ood_templates) - set(names))
        if unknown:
            raise ValueError(
                f"ood_templates names {unknown}, which are not tasks of this pipeline; its tasks "
                f"are {names}"
            )
        from first_pl.data.template import PromptTemplate

        for name, template in self.ood_templates.items():
            try:
                PromptTemplate(**template)
            except TypeError as err:
                raise ValueError(f"ood_templates.{name}: {err}") from None

    @property
    def student_seeds(self) -> list[int]:
        return list(self.seeds) or [self.seed]

    def choices(self) -> list[tuple[ChoiceSpec, list[float]]]:
        """The parameters the students choose, each with its grid (none without student_choice)."""
        if self.student_choice is None:
            return []
        grids = [(spec, getattr(self.student_choice, spec.grid)) for spec in CHOICES]
        return [(spec, values) for spec, values in grids if values]

    def all_students(self) -> dict[str, TrainStage]:
        """`students`, each followed by the student trained with its parameter as the students
        chose it (same config and budget, the parameter "auto": read from the choice)."""
        chosen = {spec.base: spec for spec, _ in self.choices()}
        methods: dict[str, TrainStage] = {}
        for method, stage in self.students.items():
            methods[method] = stage
            if method in chosen:
                spec = chosen[method]
                auto = {"model": {"init_args": {spec.argument: "auto"}}}
                overrides = deep_merge(stage.overrides, auto)
                methods[spec.method] = TrainStage(stage.config, stage.max_steps, overrides)
        return methods

    def report_label(self, method: str) -> str:
        """The method's label in the report. With a student choice, both students of a chosen
        parameter say where theirs came from: the students' validation Trust, or the base
        method's config (`auto`: the teacher's validation objective, `calibrate`)."""
        for spec, _ in self.choices():
            if method == spec.method:
                return f"{spec.base} ({spec.symbol} by student Trust)"
            if method == spec.base:
                stage = self.students[method]
                value = deep_merge(load_yaml(stage.config), stage.overrides)["model"]["init_args"]
                value = value.get(spec.argument, "default")
                if value == "auto":
                    objective = {"ece": "ECE", "trust": "Trust", "nll": "NLL"}
                    teacher = objective.get(self.calibrate_objective, self.calibrate_objective)
                    return f"{method} ({spec.symbol} by teacher {teacher})"
                return f"{method} ({spec.symbol} {value} from its config)"
        return method

    def student_name(self, method: str, seed: int) -> str:
        """`student-<method>` for the base seed (so a one-seed run's cache is reused)."""
        return f"student-{method}" if seed == self.seed else f"student-{method}-seed{seed}"

    def stage_configs(
        self,
        stage: TrainStage,
        folder: Path,
        seed: int | None = None,
        validate_every: int | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The stage's LightningCLI config, and the test's override when fit validates.

        Validating during fit (every `validate_every` steps, by default `val_check_interval`,
        and at the last step) evaluates only the training task, so the fit config keeps only it
        (and its template); the override gives the test every evaluation task back, with the
        templates of the out-of-domain ones. None when fit does not validate.
        """
        interval = self.val_check_interval if validate_every is None else validate_every
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
        if not (interval and stage.max_steps != 0):
            return config, None
        config = deep_merge(config, validation_overrides(interval, self.limit_val_batches))
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

    def devices(self) -> DeviceChoice:
        """The device and processes of every fit / test / extract stage, from the trainer
        config(s) and the GPUs this machine shows (so extraction runs where fit and test do)."""
        return stage_devices(load_merged(self.trainer).get("trainer", {}), str(self.trainer))

    def prefix_overrides(self, store: str | None) -> dict[str, Any]:
        """The shared prefix in a stage's model config, with the prefix stage's store."""
        if not self.prefix_layers:
            return {}
        model: dict[str, Any] = {"prefix_layers": self.prefix_layers}
        if store is not None:
            model["prefix_cache"] = store
        return {"model": {"init_args": {"model": model}}}

    def job_data_section(self) -> dict[str, Any]:
        """The data section with every task a stage of the job evaluates, and their templates."""
        section = self.data_section()
        init = {"eval_tasks": [section["init_args"]["train_task"], *self.ood_tasks]}
        if self.ood_templates:
            init["task_templates"] = self.ood_templates
        return deep_merge(section, {"init_args": init})

    def processes(self) -> int:
        """Processes per fit / test / extract stage."""
        return self.devices().processes

    def data_section(self) -> dict[str, Any]:
        return deep_merge(load_yaml(self.data)["data"], self.data_overrides)
