"""`first-pl coverage` and `first-pl rank-calibration` write figure 2 / 3 files and print tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from first_pl.cli import main
from first_pl.data.store import StoreMetadata, TeacherStoreWriter


def test_coverage_command_writes_figure_2(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    task = {"train_size": 6, "validation_size": 2, "test_size": 2}
    data = {
        "class_path": "first_pl.data.qa_datamodule.QADataModule",
        "init_args": {
            "tokenizer": str(tiny_model_dir),
            "train_task": {"class_path": "first_pl.tasks.GeneratedMC", "init_args": task},
        },
    }
    config = tmp_path / "data.yaml"
    config.write_text(yaml.safe_dump({"data": data}))
    out = tmp_path / "figures"
    main(
        ["coverage", "--config", str(config), "--teacher", str(tiny_model_dir)]
        + ["--output_dir", str(out), "--max_k", "10", "--max_positions", "8"]
    )
    result = json.loads((out / "coverage.json").read_text())
    assert result["k"] == list(range(1, 11)) and result["num_positions"] == 8
    assert result["total_positions"] == 12  # 6 examples x (answer letter + EOS)
    assert np.all(np.diff(result["mean"]) >= 0) and result["mean"][-1] <= 1 + 1e-9
    assert (out / "coverage.png").stat().st_size > 0
    assert len((out / "coverage.csv").read_text().splitlines()) == 11
    printed = capsys.readouterr().out
    assert "bytes_per_position" in printed and str(out / "coverage.png") in printed


def test_rank_calibration_command_writes_figure_3(tmp_path: Path, capsys) -> None:
    meta = StoreMetadata(
        k=3,
        vocab_size=50,
        tokenizer_fingerprint="t",
        teacher="x",
        task="y",
        split="validation",
        template_fingerprint="z",
        probs_dtype="float32",
    )
    store = tmp_path / "v.h5"
    ids = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9], [1, 2, 3]])
    probs = np.tile([0.5, 0.25, 0.125], (4, 1))
    with TeacherStoreWriter(store, meta) as writer:
        writer.append(["a", "b"], ids, probs, np.array([1, 5, 9, 0]), counts=[2, 2])
    out = tmp_path / "figures"
    main(["rank-calibration", "--store", str(store), "--output_dir", str(out)])
    result = json.loads((out / "rank_calibration.json").read_text())
    assert result["accuracy"] == [0.25, 0.25, 0.25] and result["mean_prob"] == [0.5, 0.25, 0.125]
    assert (out / "rank_calibration.png").stat().st_size > 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == ["rank", "mean_prob", "accuracy", "num_positions"]
    assert printed[1].split() == ["1", "0.5000", "0.2500", "4"]
