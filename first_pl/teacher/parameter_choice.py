"""What `first-pl calibrate` writes and training reads: `CalibrationResult`, and its figure.

Kept apart from the search (`first_pl.teacher.parameter_search`) so that a student reading
`calibration.json` imports no grid code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from first_pl.data.store import StoreMetadata, StoreMismatchError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

TEMPERATURE_TRANSFORMS = ("prob_temperature", "log_temperature")
OBJECTIVE_LABELS = {"ece": "ECE (%)", "trust": "Trust (%)", "nll": "NLL (nats)",
                    "student_trust": "students' validation Trust (%)"}  # fmt: skip
# The store metadata `calibration.json` records of the store it was chosen on, and which the
# store a student distils from must share: the parameter suits one teacher's top-k rows of one
# task, tokenised one way. (The split differs by design; the content fingerprint with it.)
STORE_FIELDS = (
    "teacher", "task", "k", "vocab_size", "tokenizer_fingerprint", "template_fingerprint",
    "max_length",
)  # fmt: skip


@dataclass
class CalibrationResult:
    """The chosen parameter, the whole validation curve, and the settings that produced it.

    `parameter` is the value of `transform`'s parameter (`TransformSpec.parameter`: c, T or
    delta); `value` and the curve are in the objective's units: ECE as a fraction in [0, 1],
    mean NLL in nats, or Trust (accuracy - ECE) as a fraction: the transformed teacher's, or
    with `student_trust` that of a student trained with each value
    (`first_pl.pipeline.student_choice_stages`). `ece_before` is the ECE of the teacher's
    untransformed top-1 probability, `ece_after` that of the transformed prediction at the
    chosen parameter (both fractions, whatever the objective).
    """

    parameter: float
    objective: str
    value: float
    curve: list[tuple[float, float]]
    ece_before: float
    ece_after: float
    accuracy: float
    n_positions: int
    settings: dict = field(default_factory=dict)
    transform: str = "prob_temperature"
    tail_bucket: bool = False

    @property
    def temperature(self) -> float:
        """The chosen temperature (c or T); an error for a transform that has none."""
        if self.transform not in TEMPERATURE_TRANSFORMS:
            raise ValueError(f"the calibrated transform {self.transform!r} has no temperature")
        return self.parameter

    def to_json(self, path: str | Path) -> None:
        """Write the result for `temperature: auto` / `delta: auto` to read back in training.

        Temperature transforms also get a `temperature` key (format of the first releases).
        """
        data = asdict(self)
        if self.transform in TEMPERATURE_TRANSFORMS:
            data["temperature"] = self.parameter
        Path(path).write_text(json.dumps(data, indent=2))

    @classmethod
    def from_json(cls, path: str | Path) -> CalibrationResult:
        """Read a result; a file of the first releases (only `temperature`) reads as Eq. 4's c."""
        data = json.loads(Path(path).read_text())
        temperature = data.pop("temperature", None)
        data.setdefault("parameter", temperature)
        data["curve"] = [(float(c), float(v)) for c, v in data["curve"]]
        return cls(**data)


def check_calibration_store(
    calibration: str | Path, settings: dict[str, Any], store: Path, metadata: StoreMetadata
) -> None:
    """Refuse distilling from ``store`` with a parameter chosen on another teacher, task, k or
    tokenisation; a field the calibration (written by an older first_pl) or the store does not
    record is not compared."""
    for field_name in STORE_FIELDS:
        chosen_on, training = settings.get(field_name), getattr(metadata, field_name)
        if None not in (chosen_on, training) and chosen_on != training:
            raise StoreMismatchError(
                field_name,
                f"{calibration}: {field_name} is {chosen_on!r} (of the store it was chosen on, "
                f"{settings.get('store', 'not recorded')}) but the training store {store} has "
                f"{training!r}; calibrate on the validation store of this teacher and data "
                "config, or give the parameter as a number",
            )


def plot_calibration_curve(result: CalibrationResult, path: str | Path) -> None:
    """Validation objective against the parameter with the choice marked (figure 5, left).

    Uses matplotlib's object API with the Agg canvas, so it needs no display and leaves the
    global pyplot backend alone.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5), layout="constrained")
    draw_calibration_curve(fig.add_subplot(), result)
    fig.savefig(path, dpi=120)


def draw_calibration_curve(ax: Axes, result: CalibrationResult) -> None:
    """The calibration curve on `ax`: `first-pl calibrate`'s figure and the left panel of the
    sweep's figure 5 draw the same curve, so they cannot disagree."""
    name = result.settings.get("parameter_name", "c")
    values, scores = zip(*result.curve, strict=True)
    percent = result.objective != "nll"
    scale = 100.0 if percent else 1.0
    students = result.settings.get("students") if result.objective == "student_trust" else None
    ax.plot(values, [v * scale for v in scores], marker="o", markersize=3, label="validation")
    ax.axvline(
        result.parameter, color="red", linestyle="--", label=f"chosen {name} = {result.parameter:g}"
    )
    if result.objective == "ece":
        ax.axhline(result.ece_before * 100.0, color="gray", linestyle=":", label="untransformed")
    ax.set_xlabel(f"{result.transform}{' + tail bucket' if result.tail_bucket else ''}: {name}")
    ax.set_ylabel(OBJECTIVE_LABELS[result.objective])
    where = (
        f"{len(students)} students' validation Trust" if students
        else f"{result.n_positions} validation positions"
    )  # fmt: skip
    ax.set_title(f"Choice of {name} on {where}")
    ax.legend()
