"""`first-pl sweep`: its grid (transforms, tail bucket, k) and the refusals that come before any stage."""

from __future__ import annotations

import csv
import json

import pytest
from first_pl_testing import tiny_pipeline

from first_pl.cli import main
from first_pl.pipeline.sweep import GridPoint, Sweep


def sweep(model_dir, out, **grid) -> Sweep:
    base = tiny_pipeline(
        model_dir, out, methods=("ls_distill", "first"), sizes=(16, 8, 8), ood=False
    )
    return Sweep(**{**vars(base), **grid})


def test_empty_grid_is_refused_before_any_stage(tmp_path):
    out = tmp_path / "runs"
    with pytest.raises(
        ValueError, match="the sweep grid is empty: give at least one of temperatures"
    ):
        main(["sweep", "--output_dir", str(out), "--temperatures", "[]", "--deltas", "[]"])
    assert not out.exists()


def test_unknown_task_is_refused_before_any_stage(tiny_model_dir, tmp_path):
    out = tmp_path / "runs"
    with pytest.raises(
        ValueError,
        match=r"sweep task 'generatd' is not evaluated by this config; choose one of \['generated'\]",
    ):
        sweep(tiny_model_dir, out, task="generatd").run()
    assert not out.exists()


def test_grid_crosses_transforms_and_tail_bucket():
    s = Sweep(temperatures=[0.3], log_temperatures=[2.0], deltas=[0.1], tail_buckets=[False, True])
    points = s.grid()
    assert [p.stage_name for p in points] == [
        "sweep-first-temperature0.3",
        "sweep-first-log_temperature2",
        "sweep-ls_distill-delta0.1",
        "sweep-first-temperature0.3-tail",
        "sweep-first-log_temperature2-tail",
        "sweep-ls_distill-delta0.1-tail",
    ]
    assert GridPoint("first", "log_temperature", "temperature", 2.0, True).overrides() == {
        "model": {
            "init_args": {"temperature": 2.0, "tail_bucket": True, "transform": "log_temperature"}
        }
    }
    assert points[2].overrides() == {"model": {"init_args": {"delta": 0.1, "tail_bucket": False}}}


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"log_temperatures": [0.0]}, r"sweep log_temperatures must be in \[0\.1, 10\] \(the documented range of T\), got \[0\.0\]"),
        ({"ks": [0]}, r"sweep ks must be integers >= 1, got \[0\]"),
        ({"tail_buckets": []}, "sweep tail_buckets is empty"),
    ],
)
def test_bad_grid_values_are_refused_by_name(grid, message):
    with pytest.raises(ValueError, match=message):
        Sweep(**grid)


def test_transform_and_k_dimensions_end_to_end(tiny_model_dir, tmp_path):
    """A log-space-T student with the tail bucket, one whose T calibrate chose (with the tail),
    and FIRST at k = 1 and 6 (6 > the pipeline's k = 5: one extraction at k = 6 serves both, each
    k calibrated on its own store)."""
    out = tmp_path / "runs"
    path = sweep(
        tiny_model_dir,
        out,
        temperatures=[],
        deltas=[],
        log_temperatures=[2.0],
        tail_buckets=[True],
        ks=[6, 1],
        calibrated=["log_temperature"],
    ).run()
    with (path.parent / "sweep_results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [
        (r["transform"], r["coefficient"], r["value"], r["tail_bucket"], r["k"]) for r in rows
    ] == [
        ("log_temperature", "temperature", "2.0", "True", ""),
        ("log_temperature", "temperature (chosen)", rows[1]["value"], "True", ""),
        ("prob_temperature", "k", "1", "False", "1"),
        ("prob_temperature", "k", "6", "False", "6"),
    ]
    calibration = json.loads(
        next(out.glob("calibrate-log_temperature-tail-*/calibration.json")).read_text()
    )
    assert (calibration["transform"], calibration["tail_bucket"]) == ("log_temperature", True)
    assert float(rows[1]["value"]) == calibration["parameter"]
    k1, k6 = rows[2], rows[3]
    # 8 tiny examples: HDF5's fixed metadata dominates, so sizes can tie at this scale
    assert int(k1["store_bytes"]) <= int(k6["store_bytes"])
    assert float(k1["bytes_per_token"]) > 0
    names = {p.parent.name.rsplit("-", 1)[0] for p in out.glob("*/stage.json")}
    assert {
        "sweep-first-log_temperature2-tail",
        "extract-k6-train",
        "stores-k1",
        "calibrate-k6",
        "sweep-first-k1",
    } <= names
    calibrations = {
        int(p.parent.name.split("-")[1][1:]): p for p in out.glob("calibrate-k*/calibration.json")
    }
    assert sorted(calibrations) == [1, 6]
    assert (path.parent / "figure_k.png").stat().st_size > 10_000
    assert (path.parent / "figure5.png").stat().st_size > 10_000
    config = next(out.glob("sweep-first-log_temperature2-tail-*/config.yaml")).read_text()
    assert "transform: log_temperature" in config and "tail_bucket: true" in config
    auto = next(out.glob("sweep-first-log_temperature-tail-auto-*/config.yaml")).read_text()
    assert "temperature: auto" in auto and "calibrate-log_temperature-tail-" in auto


def test_figure5_left_panel_is_the_calibrate_commands_curve(tmp_path):
    from matplotlib.figure import Figure

    from first_pl.pipeline.sweep import figure5
    from first_pl.teacher.parameter_choice import CalibrationResult, draw_calibration_curve

    result = CalibrationResult(
        0.3, "ece", 0.02, [(0.1, 0.1), (0.3, 0.02), (1.0, 0.12)], 0.12, 0.02, 0.8, 40
    )
    row = {"method": "first", "transform": "prob_temperature", "coefficient": "temperature",
           "tail_bucket": False, "k": None, "task": "gen", "n": 8, "acc": 50.0}  # fmt: skip
    rows = [{**row, "value": c, "ece": e, "trust": 50.0 - e} for c, e in ((0.1, 10.0), (0.3, 5.0))]
    left, students = figure5(result, rows, tmp_path / "figure5.png", "gen").axes
    reference = Figure().add_subplot()
    draw_calibration_curve(reference, result)

    def drawn(ax):
        return [(line.get_label(), line.get_xydata().tolist()) for line in ax.lines]

    assert drawn(left) == drawn(reference)
    assert drawn(left)[0] == ("validation", [[0.1, 10.0], [0.3, 2.0], [1.0, 12.0]])
    assert (left.get_title(), left.get_xlabel(), left.get_ylabel()) == (
        "Choice of c on 40 validation positions",
        "prob_temperature: c",
        "ECE (%)",
    )
    assert [line.get_label() for line in students.lines] == ["Acc", "ECE", "Trust"]
