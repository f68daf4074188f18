"""`scripts/student_convergence.sh` (README, "Converged students") trains the student it is told
to, validates on the schedule, and prints the curve the run left behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_convergence_script_keeps_the_layers_it_is_given_and_prints_each_validation(
    tmp_path, tiny_model_dir
):
    env = {**os.environ, "CONVERGENCE_DIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        ["bash", "scripts/student_convergence.sh", "probe", "[0, 3]", "4",
         "--model.init_args.model.name_or_path", str(tiny_model_dir),
         "--data.init_args.tokenizer", str(tiny_model_dir),
         "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "2",
         "--data.init_args.batch_size", "4", "--trainer.logger", "false"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    printed = re.findall(r"^generated  step +(\d+)  Acc +[\d.]+  ECE +[\d.]+  loss \d+\.\d{3}$",
                         run.stdout, re.M)  # fmt: skip
    assert printed == ["2", "4"]
    config = (tmp_path / "probe").rglob("config.yaml")
    saved = next(config).read_text()
    assert "keep_layers:\n      - 0\n      - 3" in saved or "keep_layers: [0, 3]" in saved
    lines = (tmp_path / "probe" / "val_curve.jsonl").read_text().splitlines()
    assert [json.loads(line)["global_step"] for line in lines] == [2, 4]
