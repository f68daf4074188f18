"""Fixtures of the robustness tests: `world`, built once per session on the tiny Llama."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from robustness_world import TASK, World, data_section  # noqa: F401


@pytest.fixture(scope="session")
def world(tmp_path_factory, tiny_model_dir: Path) -> World:
    from first_pl.cli import main

    root = tmp_path_factory.mktemp("world")
    data_yaml = root / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({"data": data_section(tiny_model_dir)}))
    distill_yaml = root / "distill_data.yaml"
    distill = data_section(tiny_model_dir, store=str(root / "teacher_train.h5"))
    distill["class_path"] = "first_pl.data.distill_datamodule.DistillDataModule"
    distill_yaml.write_text(yaml.safe_dump({"data": distill}))
    partial = World(
        tiny_model_dir, data_yaml, distill_yaml, root / "teacher", Path(), Path(), Path(), Path()
    )
    main(partial.fit_args(partial.run_dir, "--trainer.max_steps", "2"))
    (checkpoint,) = (partial.run_dir / "checkpoints").glob("*.ckpt")
    partial.checkpoint = checkpoint
    for split in ("train", "validation"):
        main(partial.extract_args(root / f"teacher_{split}.h5", split=split))
    main(
        [
            "calibrate",
            "--store",
            str(root / "teacher_validation.h5"),
            "--output_dir",
            str(root / "cal"),
        ]
    )
    return World(
        tiny_model_dir, data_yaml, distill_yaml, partial.run_dir, checkpoint,
        root / "teacher_train.h5", root / "teacher_validation.h5", root / "cal" / "calibration.json",
    )  # fmt: skip
