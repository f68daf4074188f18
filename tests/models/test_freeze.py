"""Frozen embeddings and lower layers: no gradient, no optimiser state, unchanged by training."""

from __future__ import annotations

import pytest
import torch

from first_pl.methods import FineTune
from first_pl.models import ModelSpec, build_model


def test_freeze_turns_off_exactly_the_embeddings_and_the_first_layers(tiny_model_dir) -> None:
    spec = ModelSpec(str(tiny_model_dir), keep_layers=[0, 1, 3], freeze_embeddings=True, freeze_layers=2)
    model = build_model(spec)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert not any(name.startswith(("model.embed_tokens", "model.layers.0.", "model.layers.1.")) for name in trainable)
    assert any(name.startswith("model.layers.2.") for name in trainable)  # kept layer 3, now index 2
    assert any(name.startswith("model.norm") for name in trainable)


def test_a_training_step_leaves_frozen_weights_unchanged(tiny_model_dir) -> None:
    spec = ModelSpec(str(tiny_model_dir), freeze_embeddings=True, freeze_layers=1)
    module = FineTune(model=spec)
    module.configure_model()
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)  # Adam skips params without grad
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    ids = torch.randint(3, 50, (2, 12))
    loss = module.model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    for name, p in module.model.named_parameters():
        changed = not torch.equal(before[name], p.detach())
        assert changed == p.requires_grad, name


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"freeze_layers": -1}, "model.freeze_layers must be >= 0, got -1"),
    ({"freeze_layers": 5}, "model.freeze_layers is 5 but the model keeps only 4 decoder layers"),
])  # fmt: skip
def test_bad_freeze_settings_are_refused_by_name(tiny_model_dir, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        build_model(ModelSpec(str(tiny_model_dir), **kwargs))
