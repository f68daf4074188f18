"""What the stages that train students beside the pipeline's own (the sweep's grid, its
calibrated and per-k students, the student choices) need from the pipeline: a way to train one
student stage (`TrainStudent`, which `Pipeline.train_student` is), and a grid point naming and
overriding one transform's coefficient (`GridPoint`). They take these as arguments, so none of
them imports the pipeline or the sweep that calls it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from first_pl.pipeline.files import deep_merge
from first_pl.pipeline.settings import TrainStage
from first_pl.pipeline.stages import StageResult, StageRunner


class TrainStudent(Protocol):
    """Train and test (or, `validate_only`, validate) the student `method` as the stage `name`,
    from `stage`'s config and the upstream stages `up` by name (`Pipeline.train_student`)."""

    def __call__(
        self,
        runner: StageRunner,
        name: str,
        method: str,
        stage: TrainStage,
        up: Mapping[str, StageResult],
        seed: int | None = None,
        validate_only: bool = False,
    ) -> StageResult: ...


@dataclass(frozen=True)
class GridPoint:
    """One student of the sweep: a method, the transform it applies and its coefficient."""

    method: str  # a key of Pipeline.students: "first" or "ls_distill"
    transform: str
    coefficient: str  # the init argument set: "temperature" or "delta"
    value: float
    tail_bucket: bool = False

    @property
    def name(self) -> str:
        """`<method>-<coefficient><value>[-tail]`, e.g. `first-temperature0.3`."""
        kind = "log_temperature" if self.transform == "log_temperature" else self.coefficient
        return f"{self.method}-{kind}{self.value:g}{'-tail' if self.tail_bucket else ''}"

    @property
    def stage_name(self) -> str:
        return f"sweep-{self.name}"

    def overrides(self) -> dict[str, Any]:
        args: dict[str, Any] = {self.coefficient: self.value, "tail_bucket": self.tail_bucket}
        if self.method == "first":
            args["transform"] = self.transform
        return {"model": {"init_args": args}}

    def train_stage(self, base: TrainStage, max_steps: int) -> TrainStage:
        """`base` (the student of `method`) with this point's transform, for `max_steps`."""
        return TrainStage(base.config, max_steps, deep_merge(base.overrides, self.overrides()))
