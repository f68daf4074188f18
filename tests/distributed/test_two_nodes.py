"""`fit` and `extract` as 2 nodes x 1 process on localhost: the code path a cluster uses.

Each node is its own launcher, as on a cluster: `torchrun --nnodes 2 --node_rank 0|1
--nproc_per_node 1 --master_addr 127.0.0.1` started twice, or the two tasks `srun` would start
(SLURM's variables, read by Lightning's `SLURMEnvironment`, as docs/slurm/table1.sbatch relies
on). Two nodes of one process hold the same global ranks as one node of two processes, so the
trained weights must be equal bit for bit (gloo sums two gradients, which commutes), and the
extracted store must equal the one-process store (rank blocks of whole batches).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from first_pl.cli import main

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 420
ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline",
       "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_together(commands: list[tuple[list[str], dict[str, str]]], logs: Path) -> list[str]:
    """Start every (argv, env) at once, as separate nodes would; their logs, once all exit 0."""
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, (argv, env) in enumerate(commands):
        log = (logs / f"node{i}.log").open("w")
        procs.append(subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                      env={**os.environ, **ENV, **env}))  # fmt: skip
    try:
        codes = [p.wait(timeout=TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    texts = [(logs / f"node{i}.log").read_text() for i in range(len(commands))]
    for i, (code, text) in enumerate(zip(codes, texts, strict=True)):
        assert code == 0, f"node {i} exited {code}:\n{text[-3000:]}"
    return texts


def torchrun(args: list[str], nodes: int, per_node: int, logs: Path) -> list[str]:
    """`first-pl <args>` on `nodes` localhost nodes of `per_node` processes, one torchrun each."""
    port = str(free_port())
    return run_together([
        ([sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nodes), "--node_rank", str(node),
          "--nproc_per_node", str(per_node), "--master_addr", "127.0.0.1", "--master_port", port,
          "-m", "first_pl", *args], {})
        for node in range(nodes)
    ], logs)  # fmt: skip


def fit_args(model_dir: Path, run: Path, nodes: int, devices: int) -> list[str]:
    """A two-step DDP fit of the tiny model (2 x 8 examples a step over gloo)."""
    return [
        "fit", "--config", "configs/trainer/cpu.yaml", "--config", "configs/trainer/ddp.yaml",
        "--config", "configs/data/generated.yaml", "--config", "configs/model/finetune_smollm2.yaml",
        "--model.init_args.model.name_or_path", str(model_dir), "--data.init_args.tokenizer", str(model_dir),
        "--data.init_args.train_task.init_args.train_size", "32", "--data.init_args.batch_size", "8",
        "--trainer.max_steps", "2", "--trainer.limit_val_batches", "0",
        "--trainer.num_nodes", str(nodes), "--trainer.devices", str(devices),
        "--trainer.default_root_dir", str(run), "--trainer.logger.init_args.save_dir", str(run),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    ]  # fmt: skip


def weights(run: Path) -> dict[str, torch.Tensor]:
    (checkpoint,) = (run / "checkpoints").glob("*.ckpt")
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert sorted(wa) == sorted(wb)
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


@pytest.fixture(scope="module")
def one_node_two_processes(tmp_path_factory, tiny_model_dir: Path) -> Path:
    run = tmp_path_factory.mktemp("one_node") / "run"
    torchrun(fit_args(tiny_model_dir, run, nodes=1, devices=2), 1, 2, run.parent / "logs")
    return run


def test_fit_on_two_nodes_equals_one_node_of_two_processes(one_node_two_processes, tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    node0, node1 = torchrun(fit_args(tiny_model_dir, run, nodes=2, devices=1), 2, 1, tmp_path / "logs")
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in node0 and "GLOBAL_RANK: 1, MEMBER: 2/2" in node1
    assert_same_weights(run, one_node_two_processes)


def test_fit_under_slurm_variables_on_two_nodes(one_node_two_processes, tiny_model_dir, tmp_path):
    """The two tasks `srun --nodes 2 --ntasks-per-node 1` starts; Lightning's SLURMEnvironment
    reads their ranks from SLURM's variables and launches nothing itself."""
    run, port = tmp_path / "run", str(free_port())
    slurm = {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "2", "SLURM_LOCALID": "0",
             "SLURM_NODELIST": "127.0.0.1", "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "first-pl",
             "MASTER_PORT": port}  # fmt: skip
    argv = [sys.executable, "-m", "first_pl", *fit_args(tiny_model_dir, run, nodes=2, devices=1)]
    node0, node1 = run_together([
        (argv, {**slurm, "SLURM_PROCID": str(node), "SLURM_NODEID": str(node)}) for node in range(2)
    ], tmp_path / "logs")  # fmt: skip
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in node1
    assert_same_weights(run, one_node_two_processes)


def test_extract_on_two_nodes_equals_one_process(tiny_model_dir, tmp_path):
    task = {"class_path": "first_pl.tasks.GeneratedMC", "init_args": {"train_size": 8, "seed": 3}}
    init = {"tokenizer": str(tiny_model_dir), "train_task": task, "max_length": 64}
    config = tmp_path / "data.yaml"
    config.write_text(yaml.safe_dump({"data": {"class_path": "first_pl.data.qa_datamodule.QADataModule", "init_args": init}}))
    args = ["extract", "--config", str(config), "--teacher", str(tiny_model_dir), "--probs_dtype", "float32",
            "--batch_size", "2", "--progress", "false", "--precision", "32-true"]  # fmt: skip
    main([*args, "--output", str(tmp_path / "one.h5")])
    node0, _ = torchrun([*args, "--output", str(tmp_path / "two.h5")], 2, 1, tmp_path / "logs")
    assert "store: " in node0  # rank 0 merged and summarised
    assert sorted(p.name for p in tmp_path.glob("two.h5*")) == ["two.h5"]  # no shard left behind
    with h5py.File(tmp_path / "one.h5") as one, h5py.File(tmp_path / "two.h5") as two:
        assert sorted(one) == sorted(two)
        for name in one:
            np.testing.assert_array_equal(one[name][:], two[name][:], err_msg=name)
