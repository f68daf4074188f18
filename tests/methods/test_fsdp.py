"""FSDP2 (ModelParallelStrategy) and DDP on 2 CPU processes against one process, through the CLI.

The same global batch everywhere: one process takes batches of 8, two take 4 each. Lightning
always gives distributed training a shuffling DistributedSampler (seeded by seed_everything);
with permutation `perm`, rank r takes perm[r::2], so a step's two rank batches together are
perm[8s:8s+8]. The single process reads that same order (`ReplicaOrderQA`: a one-replica
DistributedSampler with the same seed). Every example has the same number of response tokens,
so the mean of the rank means is the single-process mean, and so are the gradients.
16 examples make 2 steps per epoch: the step-2 checkpoint is an epoch boundary, where Lightning
resumes exactly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from first_pl_testing import tiny_run_args
from jsonargparse import ArgumentParser
from lightning.pytorch.strategies import FSDPStrategy
from torch.utils.data import DataLoader, DistributedSampler
from transformers import AutoModelForCausalLM
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

from first_pl.cli import main
from first_pl.commands.export import export
from first_pl.data.qa_datamodule import QADataModule
from first_pl.methods.checkpoint import LIGHTNING_META_FILE

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
STEPS = 4


def fit_args(model_dir: Path, run: Path, batch_size: int) -> list[str]:
    return ["fit", *tiny_run_args(model_dir, run, "--trainer.log_every_n_steps", "1",
                                  "--trainer.limit_val_batches", "0", "--trainer.max_epochs", "2",
                                  "--trainer.max_steps", str(STEPS), "--trainer.enable_progress_bar", "false",
                                  "--trainer.enable_model_summary", "false", "--seed_everything", "0",
                                  batch_size=batch_size)]  # fmt: skip


class ReplicaOrderQA(QADataModule):
    """Training batches in the order Lightning's DistributedSampler gives all ranks together."""

    def train_dataloader(self) -> DataLoader:
        items = self.train_items()
        sampler = DistributedSampler(items, num_replicas=1, rank=0, shuffle=True, seed=0)
        return DataLoader(items, self.batch_size, sampler=sampler, collate_fn=self.collate_train)


EVERY_2_STEPS = [
    "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
    "--trainer.callbacks.init_args.every_n_train_steps=2",
    "--trainer.callbacks.init_args.save_top_k=-1",
]


def launch(args: list[str], timeout: float = 180) -> None:
    """`python -m first_pl ...` in a fresh process; Lightning spawns the second rank itself."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    done = subprocess.run(
        [sys.executable, "-m", "first_pl", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-4000:]


def train_losses(run: Path) -> list[float]:
    rows = [r.split(",") for r in (run / "metrics.csv").read_text().splitlines()]
    col = rows[0].index("train/loss")
    return [float(r[col]) for r in rows[1:] if r[col]]


@pytest.fixture(scope="module")
def single(tiny_model_dir, tmp_path_factory) -> list[float]:
    run = tmp_path_factory.mktemp("single")
    main(
        [
            *fit_args(tiny_model_dir, run, batch_size=8),
            "--data.class_path",
            f"{__name__}.ReplicaOrderQA",
        ]
    )
    return train_losses(run)


@pytest.fixture(scope="module")
def fsdp_run(tiny_model_dir, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("fsdp")
    fsdp = ["--config", str(CONFIGS / "trainer" / "fsdp_cpu.yaml")]
    launch([*fit_args(tiny_model_dir, run, batch_size=4), *fsdp, *EVERY_2_STEPS])
    return run


def test_fsdp2_on_cpu_matches_one_process(single, fsdp_run):
    losses = train_losses(fsdp_run)
    print("single:", single, "fsdp2:", losses)
    assert len(single) == len(losses) == STEPS
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(single), rtol=1e-4, atol=1e-5)


def test_fsdp2_sharded_checkpoint_resumes_the_same_curve(tiny_model_dir, fsdp_run, tmp_path):
    step2 = fsdp_run / "checkpoints" / "epoch=0-step=2.ckpt"
    # sharded: a folder per checkpoint, holding the metadata file first_pl looks for (the file
    # name is private to Lightning 2.6: this pins LIGHTNING_META_FILE to what it writes)
    assert step2.is_dir() and (step2 / LIGHTNING_META_FILE).is_file()
    resumed = tmp_path / "resumed"
    fsdp = ["--config", str(CONFIGS / "trainer" / "fsdp_cpu.yaml")]
    launch([*fit_args(tiny_model_dir, resumed, batch_size=4), *fsdp, "--ckpt_path", str(step2)])
    torch.testing.assert_close(
        torch.tensor(train_losses(resumed)), torch.tensor(train_losses(fsdp_run)[2:])
    )


def test_sharded_checkpoint_exports_to_a_plain_hf_folder(tiny_model_dir, fsdp_run, tmp_path):
    final = fsdp_run / "checkpoints" / f"epoch=1-step={STEPS}.ckpt"
    out = export(str(final), str(tmp_path / "hf"))
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    assert model.config.num_hidden_layers == 4
    # trained weights, not the initial ones: the export differs from the starting model
    start = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    diff = (model.model.embed_tokens.weight - start.model.embed_tokens.weight).abs().max()
    assert diff > 0


def test_lora_under_fsdp2_matches_one_process_and_exports_merged(tiny_model_dir, tmp_path):
    """LoRA adapters shard with their layers (frozen and trainable weights in one FSDP2 unit)."""
    lora = [
        "--config", str(CONFIGS / "model" / "lora.yaml"),
        "--model.init_args.model.lora.r", "4",
        "--model.init_args.optimizer.lr", "1e-2",
        # float32: at this learning rate bf16's rounding of the two ranks' sums would differ
        # from one process's by more than the tolerance on the 4th step
        "--trainer.precision", "32-true",
    ]  # fmt: skip
    single_run, fsdp_run = tmp_path / "single", tmp_path / "fsdp"
    main([*fit_args(tiny_model_dir, single_run, batch_size=8), *lora,
          "--data.class_path", f"{__name__}.ReplicaOrderQA"])  # fmt: skip
    fsdp = ["--config", str(CONFIGS / "trainer" / "fsdp_cpu.yaml")]
    launch([*fit_args(tiny_model_dir, fsdp_run, batch_size=4), *lora, *fsdp])
    single = train_losses(single_run)
    assert len(single) == STEPS and single[-1] < single[0]
    torch.testing.assert_close(torch.tensor(train_losses(fsdp_run)), torch.tensor(single), rtol=1e-4, atol=1e-5)
    final = fsdp_run / "checkpoints" / f"epoch=1-step={STEPS}.ckpt"
    model = AutoModelForCausalLM.from_pretrained(export(str(final), str(tmp_path / "hf")))
    assert not any("lora" in name for name in model.state_dict())
    start = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert (model.model.layers[0].self_attn.q_proj.weight - start.model.layers[0].self_attn.q_proj.weight).abs().max() > 0
    torch.testing.assert_close(model.model.embed_tokens.weight, start.model.embed_tokens.weight)


def test_ddp_on_two_cpu_processes_matches_one_process(tiny_model_dir, single, tmp_path):
    run = tmp_path / "ddp"
    ddp = ["--config", str(CONFIGS / "trainer" / "ddp.yaml")]
    launch([*fit_args(tiny_model_dir, run, batch_size=4), *ddp])
    losses = train_losses(run)
    print("single:", single, "ddp:", losses)
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(single), rtol=1e-4, atol=1e-5)


def test_gpu_fsdp_config_names_decoder_layer_policies():
    """configs/trainer/fsdp.yaml (GPU only, not run here) instantiates FSDPStrategy as intended."""
    trainer = yaml.safe_load((CONFIGS / "trainer" / "fsdp.yaml").read_text())["trainer"]
    assert trainer["precision"] == "bf16-mixed"
    parser = ArgumentParser()
    parser.add_argument("--strategy", type=FSDPStrategy)
    strategy = parser.instantiate(parser.parse_object({"strategy": trainer["strategy"]})).strategy
    assert strategy.kwargs["auto_wrap_policy"]._module_classes == {LlamaDecoderLayer}
    policy = strategy._activation_checkpointing_kwargs["auto_wrap_policy"]
    assert policy._module_classes == {LlamaDecoderLayer}
    assert strategy._state_dict_type == "sharded"
    assert strategy.kwargs["use_orig_params"] is True  # LoRA: frozen and trainable in one unit
