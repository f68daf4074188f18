"""What the stages before the students hand on, as typed values.

A stage's record (`StageResult`) says where its files are and which key it has; a student's
own key hashes the names and keys of the stages it reads, so the upstream stages stay reachable
by their stage names (`up["extract-train"]`), as the notebooks and the sweep use them. Beside
the records, what a stage computed in this process is kept in memory: the calibration is the
`CalibrationResult` that `first-pl calibrate` returned, read back from its `calibration.json`
only when the stage was done by an earlier run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from first_pl.pipeline.stages import StageResult
from first_pl.teacher.parameter_choice import CalibrationResult


@dataclass(frozen=True)
class Calibrated:
    """A calibrate stage: its record (which students' keys read) and the result it chose."""

    stage: StageResult
    result: CalibrationResult

    @property
    def path(self) -> str:
        """Its `calibration.json`, which `temperature: auto` / `delta: auto` read in training."""
        return self.stage.outputs["calibration"]


@dataclass(frozen=True)
class Upstream(Mapping[str, StageResult]):
    """Every stage before the students; also a mapping from stage name to stage record."""

    prepare: StageResult
    data: StageResult
    zero_shot: StageResult
    teacher: StageResult
    train_store: StageResult
    validation_store: StageResult
    calibration: Calibrated
    analysis: StageResult
    prefix: StageResult | None = None  # the shared frozen prefix's states, when the job has one

    def records(self) -> dict[str, StageResult]:
        """The stage records by stage name, in the order the stages ran."""
        stages = (self.prepare, self.data, self.prefix, self.zero_shot, self.teacher,
                  self.train_store, self.validation_store, self.calibration.stage, self.analysis)  # fmt: skip
        return {stage.name: stage for stage in stages if stage is not None}

    def __getitem__(self, name: str) -> StageResult:
        return self.records()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.records())

    def __len__(self) -> int:
        return len(self.records())
