"""`first-pl calibrate` on a synthetic validation store whose best temperature is planted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from first_pl.cli import main
from first_pl.commands import calibrate as command
from first_pl.data.store import StoreMetadata, TeacherStoreError, TeacherStoreWriter
from first_pl.methods import FIRST
from first_pl.teacher import choose_on_store
from first_pl.teacher.parameter_search import CalibrationResult

K, PER_EXAMPLE = 5, 4


def write_planted_store(
    path, n: int, c_star: float, answer_c: float | None = None, seed: int = 0, split="validation"
):
    """n positions in examples of 4; gold drawn from temperature_scale(p, c_star).

    With `answer_c`, each example's first position (its answer) is drawn at `answer_c`
    instead, so the answer-only objective has a different optimum than all tokens.
    """
    g = torch.Generator().manual_seed(seed)
    scale = torch.rand(n, 1, generator=g) * 4 + 0.5
    probs = torch.softmax(torch.randn(n, K + 3, generator=g) * scale, -1)
    probs = probs.sort(-1, descending=True).values[:, :K]
    cs = torch.full((n, 1), c_star)
    if answer_c is not None:
        cs[::PER_EXAMPLE] = answer_c
    rank = torch.multinomial(torch.softmax(probs / cs, -1), 1, generator=g)[:, 0]
    ids = np.tile(np.arange(K), (n, 1))
    meta = StoreMetadata(K, K, "tok", "teacher", "planted", split, "tpl", "float32")
    with TeacherStoreWriter(path, meta) as writer:
        writer.append(
            [f"ex{i}" for i in range(n // PER_EXAMPLE)],
            ids,
            probs.numpy(),
            rank.numpy(),
            counts=[PER_EXAMPLE] * (n // PER_EXAMPLE),
        )
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_planted_store(tmp_path_factory.mktemp("cal") / "val.h5", 20_000, 0.4)


@pytest.fixture(scope="module")
def answer_store(tmp_path_factory):
    return write_planted_store(tmp_path_factory.mktemp("cal") / "val.h5", 20_000, 0.4, answer_c=0.8)


def test_recovers_planted_c_and_writes_result_figure_and_table(store, tmp_path, capsys):
    out = tmp_path / "cal"
    result = command.calibrate(str(store), str(out))
    assert abs(result.parameter - 0.4) <= 0.04
    saved = CalibrationResult.from_json(out / command.RESULT_FILE)
    assert saved == result
    assert saved.curve == sorted(saved.curve) and len(saved.curve) >= 10
    settings = saved.settings
    assert settings["store"] == str(store.resolve()) and len(settings["store_fingerprint"]) == 16
    assert [d for d, _ in settings["label_smoothing"]] == list(command.DEFAULT_DELTAS)
    assert (out / command.FIGURE_FILE).read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in out.iterdir()) == [command.RESULT_FILE, command.FIGURE_FILE]
    table = capsys.readouterr().out
    assert "<- chosen" in table and f"chosen c = {result.temperature:g}" in table
    assert FIRST(calibration=str(out / command.RESULT_FILE)).temperature == result.temperature


def test_cli_answer_only_nll(answer_store, tmp_path):
    """Answer rows were planted at c = 0.8: answer-only picks that, on one row per example."""
    out = tmp_path / "cal"
    main(
        ["calibrate", "--store", str(answer_store), "--output_dir", str(out)]
        + ["--objective", "nll", "--answer_only", "true", "--deltas", "[0.1, 0.2]"]
    )
    data = json.loads((out / command.RESULT_FILE).read_text())
    assert data["objective"] == "nll" and data["settings"]["answer_only"] is True
    assert data["n_positions"] == 20_000 // PER_EXAMPLE
    assert abs(data["temperature"] - 0.8) <= 0.1
    assert [d for d, _ in data["settings"]["label_smoothing"]] == [0.1, 0.2]


def test_a_failed_run_leaves_no_result(store, tmp_path, monkeypatch):
    out = tmp_path / "cal"

    def killed(result, path):
        raise KeyboardInterrupt

    monkeypatch.setattr(choose_on_store, "plot_calibration_curve", killed)
    with pytest.raises(KeyboardInterrupt):
        command.calibrate(str(store), str(out))
    assert list(out.iterdir()) == []


def test_missing_or_partial_store_fails_clearly(tmp_path):
    with pytest.raises(TeacherStoreError, match="does not exist"):
        command.calibrate(str(tmp_path / "none.h5"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_train_or_test_store_is_refused_unless_allowed(tmp_path, split):
    store = write_planted_store(tmp_path / f"{split}.h5", 400, 0.4, split=split)
    with pytest.raises(TeacherStoreError, match=f"holds the {split} split; calibrate chooses"):
        command.calibrate(str(store), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    result = command.calibrate(str(store), str(tmp_path / "out"), allow_split=True)
    assert result.settings["split"] == split and result.settings["allow_split"] is True


def test_cli_refuses_a_train_store_in_one_line(tmp_path, capsys, monkeypatch):
    store = write_planted_store(tmp_path / "train.h5", 400, 0.4, split="train")
    argv = ["first-pl", "calibrate", "--store", str(store), "--output_dir", str(tmp_path / "o")]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("first-pl calibrate: error:")
        and "\n" not in err
        and err.endswith("--allow_split true to calibrate on this split anyway")
    )


def test_log_temperature_is_chosen_recorded_and_read_by_the_student(store, tmp_path, capsys):
    out = tmp_path / "cal"
    main(
        ["calibrate", "--store", str(store), "--output_dir", str(out)]
        + ["--transform", "log_temperature", "--objective", "trust"]
    )
    data = json.loads((out / command.RESULT_FILE).read_text())
    assert data["transform"] == "log_temperature" and data["settings"]["parameter_name"] == "T"
    assert all(0.1 <= t <= 10 for t, _ in data["curve"])
    assert "chosen T = " in capsys.readouterr().out
    student = FIRST(calibration=str(out / command.RESULT_FILE))
    assert (student.transform, student.temperature) == ("log_temperature", data["parameter"])


def test_choice_at_the_grid_edge_warns(tmp_path):
    """Planted at c = 3: the best c in (0, 1] is its upper end, and calibrate says so."""
    store = write_planted_store(tmp_path / "val.h5", 4_000, 3.0)
    with pytest.warns(UserWarning, match="upper edge of the searched grid"):
        result = command.calibrate(str(store), str(tmp_path / "out"))
    assert result.parameter == 1.0 and max(c for c, _ in result.curve) == 1.0


def test_empty_store_is_refused_by_name(tmp_path):
    meta = StoreMetadata(K, K, "tok", "teacher", "planted", "validation", "tpl", "float32")
    with TeacherStoreWriter(tmp_path / "empty.h5", meta) as writer:
        writer.append(["ex0"], np.zeros((0, K)), np.zeros((0, K)), np.zeros(0), counts=[0])
    with pytest.raises(TeacherStoreError, match="empty.h5 holds no response positions"):
        command.calibrate(str(tmp_path / "empty.h5"), str(tmp_path / "out"))
