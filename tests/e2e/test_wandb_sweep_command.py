"""The W&B sweep YAMLs run as `wandb agent` runs them, offline, for one parameter set.

The command is built by wandb's own code (`create_sweep_command`, `create_sweep_command_args`
and the agent's macro substitution, wandb/wandb_agent.py `_command_run`) from the sweep file's
`command:` and a parameter set: the swept value plus fixed values (`value:` entries, as a user
would add to the sweep's `parameters:`) that point the run at the tiny model and a tiny store.
It runs with the agent's environment (WANDB_RUN_ID, WANDB_SWEEP_ID, WANDB_SWEEP_PARAM_PATH) in a
folder whose `configs` is the repository's, so the run folder lands where the YAML says.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from wandb_run_files import history_keys

from first_pl.cli import main

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
SWEPT = {"first_temperature.yaml": ("model.init_args.temperature", 0.3),
         "label_smoothing_delta.yaml": ("model.init_args.delta", 0.1)}  # fmt: skip


def agent_command(sweep: dict, params: dict, run_id: str) -> list[str]:
    """The argv `wandb agent` starts for `params` (wandb_agent.Agent._command_run, non-function)."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    command = sweep_utils.create_sweep_command(list(sweep["command"]))
    variables = sweep_utils.create_sweep_command_args(
        {"args": {k: {"value": v} for k, v in params.items()}, "run_id": run_id}
    )
    variables |= {"interpreter": ["python"], "program": [sweep["program"]], "env": ["/usr/bin/env"]}
    argv: list[str] = []
    for chunk in map(str, command):
        argv += (variables.get(chunk[2:-1]) or []) if chunk.startswith("${") and chunk.endswith("}") else [chunk]
    return argv


@pytest.mark.parametrize("sweep_file", sorted(SWEPT))
def test_sweep_command_runs_offline_for_one_parameter_set(sweep_file, tiny_model_dir, tmp_path):
    sweep = yaml.safe_load((REPO / "configs" / "sweeps" / sweep_file).read_text())
    name, value = SWEPT[sweep_file]
    assert value in sweep["parameters"][name]["values"]
    data = {"data.init_args.tokenizer": str(tiny_model_dir), "data.init_args.batch_size": 4,
            "data.init_args.train_task.init_args.train_size": 8,
            "data.init_args.train_task.init_args.validation_size": 4,
            "data.init_args.train_task.init_args.test_size": 4}  # fmt: skip
    store = tmp_path / "teacher_train.h5"
    overrides = [f"--{k}={v}" for k, v in data.items()]
    main(["extract", "--config", str(REPO / "configs/data/generated_distill.yaml"), *overrides,
          "--teacher", str(tiny_model_dir), "--output", str(store), "--progress", "false"])  # fmt: skip
    params = {name: value, **data, "data.init_args.store": str(store),
              "model.init_args.model.name_or_path": str(tiny_model_dir),
              "model.init_args.model.keep_layers": [0, 1, 2, 3], "trainer.max_steps": 1,
              "trainer.limit_val_batches": 0, "trainer.enable_progress_bar": False}  # fmt: skip
    run_id = Path(sweep_file).stem.replace("_", "-")  # an agent gives each run its own id
    work = tmp_path / "work"
    work.mkdir()
    (work / "configs").symlink_to(REPO / "configs")
    param_path = work / "wandb" / "sweep-abc123" / f"config-{run_id}.yaml"
    param_path.parent.mkdir(parents=True)
    param_path.write_text(yaml.safe_dump({k: {"value": v} for k, v in params.items()}))
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_RUN_ID": run_id, "WANDB_SWEEP_ID": "abc123",
           "WANDB_SWEEP_PARAM_PATH": str(param_path), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    # an agent starts no W&B run itself: no service of this test process (one an in-process
    # pipeline test may have started) is handed down
    env.pop("WANDB_SERVICE", None)
    argv = agent_command(sweep, params, run_id)
    assert argv[:3] == ["/usr/bin/env", "bash", "-c"] and f"--{name}={value}" in argv
    done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = work / "runs" / "sweeps" / run_id
    assert len(list(run.glob(f"*/{run_id}/checkpoints/*.ckpt"))) == 1  # what the test step found
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["init_args"][name.rsplit(".", 1)[1]] == value
    # the W&B run of id run_id (fit, then test resumed into it) holds the sweep's metric
    files = list((run / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert files and "val/generated/trust" not in sweep["metric"]["name"]
    keys = set().union(*map(history_keys, files))
    task = sweep["metric"]["name"].rsplit("/", 1)[0]  # test/generated
    assert {sweep["metric"]["name"], f"{task}/acc", f"{task}/ece", f"{task}/reliability/_type"} <= keys
    assert list((run / "wandb").glob(f"offline-run-*-{run_id}/files/media/images/{task}/reliability_*.png"))
