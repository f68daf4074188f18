"""docs/slurm/table1.sbatch stays runnable: every command it gives `srun` parses, in order.

No SLURM here, so `srun` is a stand-in that drops srun's own options, records the command and,
for a fit, leaves the empty checkpoint the script's `ls` looks for. The test then parses each
recorded command with `--print_config` (jsonargparse checks every option and instantiates
nothing, downloads nothing), writing a fit's printed config where the fit would write its
`config.yaml`, so the `test` commands that read them parse too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from first_pl.cli import main

REPO = Path(__file__).resolve().parents[2]
SBATCH = REPO / "docs" / "slurm" / "table1.sbatch"
FAKE_SRUN = f"""#!/bin/bash
set -euo pipefail
while [[ $1 == --* ]]; do shift 2; done
"{sys.executable}" -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >> "$SRUN_LOG"
args=("$@")
for i in "${{!args[@]}}"; do
  [[ ${{args[$i]}} == --trainer.default_root_dir && $2 == fit ]] && mkdir -p "${{args[$((i + 1))]}}/checkpoints" \
    && touch "${{args[$((i + 1))]}}/checkpoints/last.ckpt"
done
true
"""


def print_config(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--print_config"])
    assert done.value.code in (0, None), argv
    return capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize(("task", "pair"), [("alpaca", "llama1")])
def test_every_srun_command_of_the_table1_example_parses(tmp_path, capsys, task, pair):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "srun").chmod(0o755)
    log, out = tmp_path / "srun.log", tmp_path / "out"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SRUN_LOG": str(log),
           "TASK": task, "PAIR": pair, "OUT": str(out), "SLURM_NNODES": "2",
           "SLURM_NTASKS_PER_NODE": "8", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}  # fmt: skip
    result = subprocess.run(["bash", str(SBATCH)], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    recorded = [json.loads(line) for line in log.read_text().splitlines()]
    assert {argv[0] for argv in recorded} == {"first-pl"}
    for _, *argv in recorded:
        printed = print_config(argv, capsys)
        if argv[0] == "fit":
            folder = Path(argv[argv.index("--trainer.default_root_dir") + 1])
            (folder / "config.yaml").write_text(printed)
    commands = [argv[1] for argv in recorded]
    assert commands == ["fit", "test", "export", "extract", "extract", "calibrate",
                        *["fit", "test"] * 4, "report"]  # fmt: skip
    teacher = yaml.safe_load((out / "teacher" / "config.yaml").read_text())
    assert teacher["model"]["init_args"]["model"]["name_or_path"] == "huggyllama/llama-30b"
    assert (teacher["trainer"]["num_nodes"], str(teacher["trainer"]["devices"])) == (2, "8")
    assert teacher["trainer"]["strategy"]["init_args"]["sharding_strategy"] == "FULL_SHARD"
    first = yaml.safe_load((out / "student-first" / "config.yaml").read_text())
    assert first["model"]["class_path"] == "first_pl.methods.FIRST"
    assert first["model"]["init_args"]["calibration"] == str(out / "calibrate" / "calibration.json")
    data = first["data"]["init_args"]
    assert first["data"]["class_path"] == "first_pl.data.distill_datamodule.DistillDataModule"
    assert data["store"] == str(out / "stores" / "train.h5") and data["tokenizer"] == "huggyllama/llama-7b"
    assert [t["class_path"] for t in data["eval_tasks"]] == ["first_pl.tasks.CommonsenseQA", "first_pl.tasks.OpenBookQA"]
