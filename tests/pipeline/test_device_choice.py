"""The device a run uses, chosen with 0, 1 or 4 GPUs injected (no GPU needed): the torch lock
install.sh picks, the pipeline's processes per stage, and the device the teacher's extraction
runs on (the one its fit and test use)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from first_pl_testing import CONFIGS

from first_pl.devices import choose_devices
from first_pl.pipeline.pipeline import Pipeline
from first_pl.pipeline.stages import StageResult, StageRunner
from first_pl.pipeline.teacher_stages import extract_stage
from first_pl.teacher.extract_launch import device_for_rank

ROOT = CONFIGS.parent
FLAVOUR = ROOT / "scripts" / "torch_flavour.sh"
H200 = "GPU {i}: NVIDIA H200 (UUID: GPU-0000000{i})"


def flavour(tmp_path: Path, smi: str | None, **env: str) -> tuple[str, str]:
    """(stdout, stderr) of scripts/torch_flavour.sh with a fake `nvidia-smi` first on PATH
    (a bash script body; None: no nvidia-smi at all)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if smi is not None:
        fake = bin_dir / "nvidia-smi"
        fake.write_text(f"#!/bin/bash\n{smi}\n")
        fake.chmod(0o755)
    environ = {k: v for k, v in os.environ.items() if k not in ("FIRST_PL_TORCH", "NVIDIA_SMI")}
    # PATH holds only the fake and the basic tools, so a real nvidia-smi cannot answer
    environ.update(PATH=f"{bin_dir}:/usr/bin:/bin", **env)
    done = subprocess.run(["bash", str(FLAVOUR)], env=environ, capture_output=True, text=True,
                          check=True)  # fmt: skip
    return done.stdout.strip(), done.stderr.strip()


def gpu_list(n: int) -> str:
    return "\n".join(f"echo '{H200.format(i=i)}'" for i in range(n)) or "true"


@pytest.mark.parametrize(
    ("smi", "env", "chosen", "why"),
    [(None, {}, "cpu", "install.sh: torch cpu (no nvidia-smi found, so no NVIDIA driver; FIRST_PL_TORCH=gpu overrides)"),
     (gpu_list(0), {}, "cpu", "install.sh: torch cpu (nvidia-smi -L lists no GPU; FIRST_PL_TORCH=gpu overrides)"),
     (gpu_list(1), {}, "gpu", "install.sh: torch gpu (nvidia-smi -L lists 1 GPU(s), the first NVIDIA H200; FIRST_PL_TORCH=cpu overrides)"),
     (gpu_list(4), {}, "gpu", "install.sh: torch gpu (nvidia-smi -L lists 4 GPU(s), the first NVIDIA H200; FIRST_PL_TORCH=cpu overrides)"),
     ("echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'; exit 9", {}, "cpu",
      "install.sh: torch cpu (nvidia-smi -L failed: NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.; FIRST_PL_TORCH=gpu overrides)"),
     (gpu_list(4), {"FIRST_PL_TORCH": "cpu"}, "cpu", "install.sh: torch cpu (set by FIRST_PL_TORCH)"),
     (None, {"FIRST_PL_TORCH": "gpu"}, "gpu", "install.sh: torch gpu (set by FIRST_PL_TORCH)")],
)  # fmt: skip
def test_install_chooses_the_gpu_lock_when_nvidia_smi_lists_a_gpu(tmp_path, smi, env, chosen, why):
    assert flavour(tmp_path, smi, **env) == (chosen, why)
    assert (ROOT / "requirements" / f"{chosen}.txt").is_file()  # install.sh's lock for it


def test_nvidia_smi_variable_names_the_program_to_ask(tmp_path):
    fake = tmp_path / "my-smi"
    fake.write_text(f"#!/bin/bash\n{gpu_list(2)}\n")
    fake.chmod(0o755)
    chosen, why = flavour(tmp_path, None, NVIDIA_SMI=str(fake))
    assert chosen == "gpu" and f"({fake} -L lists 2 GPU(s)" in why


def test_install_sh_takes_its_choice_from_torch_flavour():
    text = (ROOT / "scripts" / "install.sh").read_text()
    assert "flavour=$(bash scripts/torch_flavour.sh)" in text
    assert "lock=requirements/$flavour.txt" in text


def trainer(*names: str) -> dict:
    merged: dict = {}
    for name in names:
        merged.update(yaml.safe_load((CONFIGS / "trainer" / f"{name}.yaml").read_text())["trainer"])
    return merged


# (trainer configs, GPUs visible) -> (device, processes per stage)
CHOICES = {
    (("auto",), 0): ("cpu", 1), (("auto",), 1): ("gpu", 1), (("auto",), 4): ("gpu", 1),
    (("cpu",), 0): ("cpu", 1), (("cpu",), 1): ("cpu", 1), (("cpu",), 4): ("cpu", 1),
    (("gpu",), 1): ("gpu", 1), (("gpu",), 4): ("gpu", 1),
    (("fsdp",), 1): ("gpu", 1), (("fsdp",), 4): ("gpu", 4),
    (("cpu", "ddp"), 4): ("cpu", 2),
}  # fmt: skip


@pytest.mark.parametrize(("names", "gpus"), list(CHOICES))
def test_device_choice_for_0_1_and_4_gpus(names, gpus):
    choice = choose_devices(trainer(*names), "t.yaml", gpus=gpus)
    assert (choice.accelerator, choice.processes) == CHOICES[names, gpus]


def test_device_choice_says_why():
    assert choose_devices(trainer("auto"), "t", gpus=4).reason == (
        "accelerator auto -> gpu (4 CUDA GPUs visible), devices 1 -> 1 process"
    )
    assert choose_devices(trainer("fsdp"), "t", gpus=4).reason == (
        "accelerator gpu, devices -1 -> 4 processes"
    )
    assert choose_devices({"devices": "auto"}, "t", gpus=0).reason == (
        "accelerator auto -> cpu (no CUDA GPU visible), devices 'auto' -> 1 process"
    )


@pytest.mark.parametrize("name", ["gpu", "fsdp"])
def test_a_gpu_trainer_without_a_gpu_is_refused_before_any_stage(name):
    with pytest.raises(ValueError, match=r"trainer t\.yaml: accelerator gpu, but no CUDA GPU is "
                       r"visible .*FIRST_PL_TORCH=gpu scripts/install\.sh"):  # fmt: skip
        choose_devices(trainer(name), "t.yaml", gpus=0)


def cuda(monkeypatch, gpus: int) -> None:
    """torch reports `gpus` CUDA GPUs (what the pipeline and extraction read)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)


def test_the_main_job_runs_on_the_gpu_when_torch_sees_one(monkeypatch):
    config = yaml.safe_load((CONFIGS / "experiments" / "offline_default.yaml").read_text())
    pipeline = Pipeline(trainer=str(ROOT / config["trainer"]))
    for gpus, accelerator in ((0, "cpu"), (1, "gpu"), (4, "gpu")):
        cuda(monkeypatch, gpus)
        assert (pipeline.devices().accelerator, pipeline.processes()) == (accelerator, 1)


@pytest.mark.parametrize(("name", "gpus", "accelerator", "processes"),
                         [("cpu", 4, "cpu", 1), ("auto", 0, "cpu", 1), ("auto", 4, "gpu", 1),
                          ("fsdp", 4, "gpu", 4)])  # fmt: skip
def test_extraction_runs_where_fit_and_test_run(
    tmp_path, monkeypatch, name, gpus, accelerator, processes
):
    """The extract stage's config names the trainer's device: a CPU trainer on a machine with
    GPUs extracts on the CPU too (torch alone would pick CUDA)."""
    cuda(monkeypatch, gpus)
    launched: list[tuple[list[str], int]] = []
    monkeypatch.setattr("first_pl.pipeline.teacher_stages.run_first_pl",
                        lambda args, n, log: launched.append((args, n)))  # fmt: skip
    pipeline = Pipeline(output_dir=str(tmp_path), trainer=str(CONFIGS / "trainer" / f"{name}.yaml"))
    teacher = StageResult("teacher", "k", tmp_path, {"checkpoint": "teacher.ckpt"})
    with StageRunner(tmp_path, log=lambda _: None) as runner:
        stage = extract_stage(pipeline, runner, teacher, "train")
    ((args, n),) = launched
    assert args[:2] == ["extract", "--config"] and n == processes
    assert yaml.safe_load((stage.folder / "extract.yaml").read_text())["accelerator"] == accelerator


def test_extraction_device_follows_the_accelerator(monkeypatch):
    cuda(monkeypatch, 0)
    assert device_for_rank("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"--accelerator gpu: no CUDA GPU is visible"):
        device_for_rank("gpu")
    cuda(monkeypatch, 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert device_for_rank("cpu") == torch.device("cpu")
    assert device_for_rank("auto") == torch.device("cuda", 1)
