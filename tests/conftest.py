"""Shared fixtures: a tiny tokenizer and a tiny random Llama built here, never downloaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[2] / "shared"
BIGBENCH = SHARED / "data" / "bigbench"


def build_tiny_tokenizer():
    """A word-level tokenizer over the generated tasks' words: " A" is one token, as in SmolLM2."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from first_pl.data.template import PromptTemplate
    from first_pl.tasks.generated import GeneratedInstructions, GeneratedMC

    template = PromptTemplate()
    texts = []
    for split in ("train", "validation", "test"):
        for ex in GeneratedMC(train_size=200, validation_size=50, test_size=50).load(split):
            texts.append(template.mc_prompt(ex) + template.mc_response(ex))
        for ex in GeneratedInstructions(train_size=100, validation_size=20, test_size=20).load(split):
            texts.append(template.instruction_prompt(ex) + template.instruction_response(ex))
    texts.append("A B C D E Yes No yes no")
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["<unk>", "<pad>", "<eos>"])
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>"
    )


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A folder with a random 2-layer Llama and the tiny tokenizer (a normal HF folder)."""
    from first_pl.models import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny_llama"), tiny_tokenizer, layers=4)
