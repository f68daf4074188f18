"""The one home of the vocabulary check and of the checkpoint-versus-config model check."""

from __future__ import annotations

import pytest
import torch

from first_pl.methods import FineTune
from first_pl.methods.checkpoint import CheckpointError as ReExported
from first_pl.methods.compatibility import (
    CheckpointError,
    VocabularyError,
    check_checkpoint_model,
    check_vocabulary,
    model_identity,
)
from first_pl.models import ModelSpec


class Embedded(torch.nn.Module):
    def __init__(self, rows: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(rows, 2)

    def get_input_embeddings(self) -> torch.nn.Embedding:
        return self.embed


def test_vocabulary_beyond_the_embedding_is_refused_with_both_labels():
    check_vocabulary(Embedded(5), range(5), "tok", "model", "fix it")  # every id has a row
    with pytest.raises(VocabularyError, match=r"^tok 't' has 6 tokens but model 'm' embeds only 5; fix it$"):
        check_vocabulary(Embedded(5), range(6), "tok 't'", "model 'm'", "fix it")


def test_model_identity_reads_every_form_of_a_spec():
    spec = ModelSpec(name_or_path="a", keep_every=2, dtype="bfloat16")
    want = {"name_or_path": "a", "keep_every": 2, "keep_layers": None}
    assert model_identity(spec) == want
    assert model_identity({"name_or_path": "a", "keep_every": 2}) == want


def test_checkpoint_of_another_model_is_refused_on_load():
    """A module restored from a checkpoint outside the CLI (`Trainer.fit(ckpt_path=...)`) gets
    the same refusal as `--ckpt_path`, before any weight is compared."""
    module = FineTune(model=ModelSpec(name_or_path="a"))
    saved = {"name_or_path": "a", "keep_every": 2, "keep_layers": None, "dtype": "float32"}
    with pytest.raises(
        CheckpointError,
        match=r"^the checkpoint was trained with model \{'name_or_path': 'a', 'keep_every': 2, "
        r"'keep_layers': None\} but the config gives model \{'name_or_path': 'a', 'keep_every': "
        r"None, 'keep_layers': None\}; use the model settings the checkpoint was trained with$",
    ):
        module.on_load_checkpoint({"hyper_parameters": {"model": saved}, "state_dict": {}})
    # dtype is not part of what the weights are: a bfloat16 config restores a float32 run
    same = FineTune(model=ModelSpec(name_or_path="a", keep_every=2, dtype="bfloat16"))
    same.on_load_checkpoint({"hyper_parameters": {"model": saved}, "state_dict": {}})


def test_a_checkpoint_without_a_saved_model_has_nothing_to_compare():
    check_checkpoint_model({"hyper_parameters": {}}, ModelSpec(), "x")
    check_checkpoint_model({}, ModelSpec(), "x")
    assert ReExported is CheckpointError  # the old import path names the same class
