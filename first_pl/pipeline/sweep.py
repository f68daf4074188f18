"""`first-pl sweep`: FIRST over several temperatures c and Distill w/ LS over several deltas,
with no W&B server (the W&B sweep YAMLs in configs/sweeps/ run the same grid on a server).

It reuses the pipeline's cached upstream stages (teacher, stores, calibration), trains one
student per value, and writes a results table and the paper's figure 5: validation ECE of the
transformed teacher against c (left) and the students' test Acc / ECE / Trust against c and
delta (right).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

from first_pl.pipeline.offline import Pipeline, TrainStage, deep_merge  # noqa: E402
from first_pl.pipeline.stages import StageRunner  # noqa: E402
from first_pl.report import markdown_table  # noqa: E402


@dataclass
class Sweep(Pipeline):
    """The pipeline's settings plus the grid of coefficients to sweep."""

    temperatures: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.5, 1.0])
    deltas: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.2])
    task: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        bad = [c for c in self.temperatures if not c > 0]
        if bad:
            raise ValueError(f"sweep temperatures must be > 0, got {bad}")
        bad = [d for d in self.deltas if not 0 <= d < 1]
        if bad:
            raise ValueError(f"sweep deltas must be in [0, 1), got {bad}")

    def variant(self, method: str, key: str, value: float) -> TrainStage:
        base = self.students[method]
        return TrainStage(
            base.config,
            base.max_steps,
            deep_merge(base.overrides, {"model": {"init_args": {key: value}}}),
        )

    def run(self) -> Path:
        runner = StageRunner(Path(self.output_dir))
        up = self.upstream(runner)
        rows: list[dict[str, Any]] = []
        grid = [("first", "temperature", c) for c in self.temperatures] + [
            ("ls_distill", "delta", d) for d in self.deltas
        ]
        for method, key, value in grid:
            result = self.train_student(
                runner,
                f"sweep-{method}-{key}{value:g}",
                method,
                self.variant(method, key, value),
                up,
            )
            for task, figures in result.outputs["metrics"].items():
                rows.append(
                    {"method": method, "coefficient": key, "value": value, "task": task, **figures}
                )
        out = Path(self.output_dir) / "sweep"
        out.mkdir(parents=True, exist_ok=True)
        write_rows(rows, out / "sweep_results.csv")
        header = ["method", "coefficient", "value", "task", "n", "acc", "ece", "trust"]
        table = markdown_table(header, [[fmt(r[h]) for h in header] for r in rows])
        calibration = json.loads(Path(up["calibrate"].outputs["calibration"]).read_text())
        task = self.task or rows[0]["task"]
        figure5(calibration, [r for r in rows if r["task"] == task], out / "figure5.png", task)
        chosen = f"calibrate chose c = {calibration['temperature']:.2f} (validation ECE {100 * calibration['ece_before']:.2f} -> {100 * calibration['ece_after']:.2f})."
        (out / "sweep.md").write_text(
            f"# Sweep\n\n{chosen}\n\n{table}\n\n![figure 5](figure5.png)\n"
        )
        print(f"[{runner.elapsed()}] sweep: {out / 'sweep.md'}")
        return out / "sweep.md"


def fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def write_rows(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def figure5(calibration: dict[str, Any], rows: list[dict[str, Any]], path: Path, task: str) -> None:
    """Left: validation ECE of the transformed teacher against c. Right: students' test figures."""
    fig = Figure(figsize=(13, 4))
    left, middle, right = fig.subplots(1, 3)
    cs, values = zip(*sorted(calibration["curve"]), strict=True)
    left.plot(cs, [100 * v for v in values], marker=".")
    left.axvline(
        calibration["temperature"],
        color="red",
        linestyle="--",
        label=f"chosen c = {calibration['temperature']:.2f}",
    )
    left.set(
        xlabel="temperature c",
        ylabel=f"validation {calibration['objective'].upper()} (teacher, %)",
        title="Trustworthy maximization",
    )
    left.legend()
    for axis, method, label in (
        (middle, "first", "FIRST: temperature c"),
        (right, "ls_distill", "Distill w/ LS: delta"),
    ):
        chosen = sorted((r for r in rows if r["method"] == method), key=lambda r: r["value"])
        xs = [r["value"] for r in chosen]
        for key in ("acc", "ece", "trust"):
            axis.plot(
                xs,
                [r[key] for r in chosen],
                marker="o",
                label=key.upper() if key == "ece" else key.capitalize(),
            )
        axis.set(xlabel=label, ylabel="%", title=f"students on {task} (test)")
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
