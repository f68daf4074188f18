"""Shared fixtures: a tiny tokenizer and a tiny random Llama built here, never downloaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_SILENT", "true")

import torch  # noqa: E402

torch.set_num_threads(1)

from first_pl_testing import build_tiny_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A folder with a random 2-layer Llama and the tiny tokenizer (a normal HF folder)."""
    from first_pl.models import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny_llama"), tiny_tokenizer, layers=4)
