"""`first-pl sweep`: the distillation students over a grid of teacher transforms, with no W&B
server (the W&B sweep YAMLs in configs/sweeps/ run the same grids on a server).

Dimensions: FIRST over Eq. 4's c (`temperatures`) and over the log-space T
(`log_temperatures`), Distill w/ LS over delta (`deltas`), each with and without the tail
bucket (`tail_buckets`), and FIRST over the store's k (`ks`, see `first_pl.pipeline.sweep_k`).
It reuses the pipeline's cached upstream stages (teacher, stores, calibration), trains one
student per grid point, and writes a results table, the paper's figure 5 (validation ECE of the
transformed teacher against c; the students' test Acc / ECE / Trust against each coefficient)
and, with `ks`, the k figure.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

from first_pl.pipeline.pipeline import Pipeline, TrainStage  # noqa: E402
from first_pl.pipeline.stages import StageResult, StageRunner  # noqa: E402
from first_pl.pipeline.students import GridPoint  # noqa: E402
from first_pl.pipeline.sweep_calibrated import calibrated_students  # noqa: E402
from first_pl.pipeline.sweep_k import k_figure, k_students  # noqa: E402
from first_pl.pipeline.upstream import Upstream  # noqa: E402
from first_pl.report.render import fmt, markdown_table  # noqa: E402
from first_pl.teacher.parameter_choice import (  # noqa: E402
    CalibrationResult,
    draw_calibration_curve,
)
from first_pl.teacher.transforms import TRANSFORMS  # noqa: E402

PANELS = (  # (method, transform, x label) of figure 5's student panels
    ("first", "prob_temperature", "FIRST: temperature c (Eq. 4)"),
    ("first", "log_temperature", "FIRST: temperature T on log-probabilities"),
    ("ls_distill", "label_smoothing", "Distill w/ LS: delta"),
)


@dataclass
class Sweep(Pipeline):
    """The pipeline's settings plus the grid of transforms and coefficients to sweep."""

    temperatures: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.5, 1.0])
    log_temperatures: list[float] = field(default_factory=list)
    deltas: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.2])
    tail_buckets: list[bool] = field(default_factory=lambda: [False])
    ks: list[int] = field(default_factory=list)
    # transforms whose parameter `first-pl calibrate --transform` chooses, one student each
    calibrated: list[str] = field(default_factory=list)
    task: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, values, transform in (
            ("temperatures", self.temperatures, "prob_temperature"),
            ("log_temperatures", self.log_temperatures, "log_temperature"),
            ("deltas", self.deltas, "label_smoothing"),
        ):
            spec = TRANSFORMS[transform]
            bad = [v for v in values if not spec.contains(v)]
            if bad:
                raise ValueError(
                    f"sweep {name} must be in {spec.describe_range()} (the documented range of "
                    f"{spec.parameter}), got {bad}"
                )
        bad = [k for k in self.ks if not (isinstance(k, int) and k >= 1)]
        if bad:
            raise ValueError(f"sweep ks must be integers >= 1, got {bad}")
        unknown = [name for name in self.calibrated if name not in TRANSFORMS]
        if unknown:
            raise ValueError(
                f"sweep calibrated must name transforms of {list(TRANSFORMS)}, got {unknown}"
            )
        if not self.tail_buckets:
            raise ValueError("sweep tail_buckets is empty: give [false], [true] or both")
        if not self.grid() and not self.ks and not self.calibrated:
            raise ValueError(
                "the sweep grid is empty: give at least one of temperatures, log_temperatures, "
                "deltas, ks or calibrated"
            )

    def grid(self) -> list[GridPoint]:
        """Every (transform, coefficient, tail bucket) student, in a stable order."""
        points = []
        for tail in self.tail_buckets:
            points += [
                GridPoint("first", "prob_temperature", "temperature", c, tail)
                for c in self.temperatures
            ]
            points += [
                GridPoint("first", "log_temperature", "temperature", t, tail)
                for t in self.log_temperatures
            ]
            points += [
                GridPoint("ls_distill", "label_smoothing", "delta", d, tail) for d in self.deltas
            ]
        return points

    def eval_task_names(self) -> list[str]:
        """Names of the tasks every student is tested on (train task first), without loading data."""
        from jsonargparse import ArgumentParser

        from first_pl.tasks.base import Task

        parser = ArgumentParser()
        parser.add_argument("--tasks", type=list[Task])
        specs = [self.data_section()["init_args"]["train_task"], *self.ood_tasks]
        tasks = parser.instantiate_classes(parser.parse_object({"tasks": specs})).tasks
        return [task.name for task in tasks]

    def check_task(self) -> str:
        """The task the figures show: `task`, which must be evaluated, or the train task."""
        names = self.eval_task_names()
        if self.task is not None and self.task not in names:
            raise ValueError(
                f"sweep task {self.task!r} is not evaluated by this config; choose one of {names}"
            )
        return self.task or names[0]

    def variant(self, point: GridPoint) -> TrainStage:
        base = self.students[point.method]
        return point.train_stage(base, base.max_steps)

    def run(self) -> Path:
        """The pipeline's upstream stages, then each dimension's students; the summary's path."""
        self.check_files()
        task = self.check_task()  # before any stage: a typo must not cost a whole sweep
        runner = StageRunner(Path(self.output_dir))
        up = self.upstream(runner)
        out = Path(self.output_dir) / "sweep"
        out.mkdir(parents=True, exist_ok=True)
        rows = self.grid_students(runner, up) + self.calibrated_students(runner, up)
        figures = []
        if self.grid() or self.calibrated:
            fig5_rows = [r for r in rows if r["task"] == task]
            figure5(up.calibration.result, fig5_rows, out / "figure5.png", task)
            figures.append("![figure 5](figure5.png)")
        if self.ks:
            rows += self.k_students(runner, up, out / "figure_k.png", task)
            figures.append("![k](figure_k.png)")
        write_rows(rows, out / "sweep_results.csv")
        summary = write_summary(rows, up.calibration.result, figures, out / "sweep.md")
        print(f"[{runner.elapsed()}] sweep: {summary}", flush=True)
        return summary

    def grid_students(self, runner: StageRunner, up: Upstream) -> list[dict[str, Any]]:
        """One student per grid point (`grid()`): its rows, one per evaluated task."""
        rows: list[dict[str, Any]] = []
        for point in self.grid():
            result = self.train_student(
                runner, point.stage_name, point.method, self.variant(point), up
            )
            rows += result_rows(result, vars(point) | {"k": None})
        return rows

    def calibrated_students(self, runner: StageRunner, up: Upstream) -> list[dict[str, Any]]:
        """One student per transform of `calibrated`, with the parameter calibrate chose."""
        students = calibrated_students(
            self, self.train_student, self.calibrated, self.tail_buckets, runner, up
        )
        return [row for r, point in students for row in result_rows(r, point)]

    def k_students(
        self, runner: StageRunner, up: Upstream, figure: Path, task: str
    ) -> list[dict[str, Any]]:
        """One FIRST student per k of `ks` (`sweep_k`), and the k figure of `task`."""
        students = k_students(self, self.train_student, self.ks, runner, up)
        rows = [row for r, point in students for row in result_rows(r, point)]
        k_figure([r for r in rows if r["task"] == task], figure, task)
        return rows


def result_rows(result: StageResult, point: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per evaluated task of a student stage, with the grid point that made it."""
    return [
        {**point, "task": task, **figures} for task, figures in result.outputs["metrics"].items()
    ]


def is_chosen(row: dict[str, Any]) -> bool:
    """A student of `calibrated`: its coefficient was chosen by calibrate, not set by the grid."""
    return str(row["coefficient"]).endswith("(chosen)")


def write_summary(
    rows: list[dict[str, Any]], calibration: CalibrationResult, figures: list[str], path: Path
) -> Path:
    """`sweep.md`: the parameter calibrate chose, every row as a table, then the figures."""
    header = ["method", "transform", "coefficient", "value", "tail_bucket", "k", "task", "n",
              "acc", "ece", "trust"]  # fmt: skip
    table = markdown_table(header, [[fmt(r.get(h), ".2f") for h in header] for r in rows])
    name = calibration.settings.get("parameter_name", "c")
    chosen = (
        f"calibrate chose {name} = {calibration.parameter:.2f} ({calibration.transform}; "
        f"validation ECE {100 * calibration.ece_before:.2f} -> {100 * calibration.ece_after:.2f})."
    )
    path.write_text(f"# Sweep\n\n{chosen}\n\n{table}\n\n" + "\n\n".join(figures) + "\n")
    return path


def write_rows(rows: list[dict[str, Any]], path: Path) -> None:
    """CSV of every row; columns are the union of the rows' keys (k rows add store sizes)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def figure5(
    calibration: CalibrationResult, rows: list[dict[str, Any]], path: Path, task: str
) -> Figure:
    """Left: the teacher's validation curve, drawn as `first-pl calibrate` draws it. Then one
    panel per swept transform (the students' test figures)."""
    panels = [(m, t, label) for m, t, label in PANELS if any(r["transform"] == t for r in rows)]
    fig = Figure(figsize=(4.4 * (1 + len(panels)), 4))
    axes = fig.subplots(1, 1 + len(panels), squeeze=False)[0]
    draw_calibration_curve(axes[0], calibration)
    for axis, (method, transform, label) in zip(axes[1:], panels, strict=True):
        for tail in sorted({r["tail_bucket"] for r in rows}):
            mine = [
                r
                for r in rows
                if r["method"] == method
                and r["transform"] == transform
                and r["tail_bucket"] == tail
            ]
            grid = sorted((r for r in mine if not is_chosen(r)), key=lambda r: r["value"])
            for key in ("acc", "ece", "trust"):
                name = f"{key.upper() if key == 'ece' else key.capitalize()}{' (tail)' if tail else ''}"
                line = axis.plot(
                    [r["value"] for r in grid],
                    [r[key] for r in grid],
                    marker="o",
                    linestyle="--" if tail else "-",
                    label=name,
                )
                for r in filter(is_chosen, mine):  # the value calibrate chose: a star
                    color = line[0].get_color()
                    axis.scatter([r["value"]], [r[key]], marker="*", s=160, color=color, zorder=3)
        axis.set(
            xlabel=f"{label} (star: chosen on validation)",
            ylabel="%",
            title=f"students on {task} (test)",
        )
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig
