"""first_pl.lm_head: logits at the chosen positions equal the model's own, and a model whose
logits are not the bare head's (soft-capped, scaled) is refused for students and teachers."""

from __future__ import annotations

import pytest
import torch
from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaForCausalLM

from first_pl.data.batch import IGNORE_INDEX, response_mask
from first_pl.lm_head import check_plain_lm_head, logits_at
from first_pl.methods.finetune import FineTune
from first_pl.models import ModelSpec, tiny_llama_config
from first_pl.teacher.extract import extract_topk


def test_logits_at_are_the_full_forward_logits_at_the_selected_positions_in_b_t_order():
    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_llama_config(50)).eval()
    input_ids = torch.randint(1, 50, (2, 6))
    attention_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])  # right padding
    x = IGNORE_INDEX
    labels = torch.tensor([[x, x, 7, 8, 9, x], [x, 4, 5, x, x, x]])
    select = response_mask(labels)
    with torch.no_grad():
        full = model(input_ids=input_ids, attention_mask=attention_mask).logits
        rows = logits_at(model, input_ids, attention_mask, select)
    expected = torch.stack([full[0, 2], full[0, 3], full[0, 4], full[1, 1], full[1, 2]])
    torch.testing.assert_close(rows, expected)


def tiny_gemma2(folder=None) -> Gemma2ForCausalLM:
    torch.manual_seed(0)
    config = Gemma2Config(
        vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8, final_logit_softcapping=2.0,
    )  # fmt: skip
    model = Gemma2ForCausalLM(config).eval()
    if folder is not None:
        model.save_pretrained(folder)
    return model


def test_a_soft_capped_model_has_other_logits_than_its_bare_head():
    """Why the refusal matters: the bare head on the decoder's output is not the model's logits."""
    model = tiny_gemma2()
    input_ids = torch.randint(0, 40, (1, 5))
    with torch.no_grad():
        own = model(input_ids=input_ids).logits[0]
        bare = model.get_output_embeddings()(model.get_decoder()(input_ids=input_ids)[0])[0]
    torch.testing.assert_close(own, 2.0 * torch.tanh(bare / 2.0))
    assert not torch.allclose(own, bare)


MESSAGE = (
    r"Gemma2ForCausalLM post-processes its logits \(final_logit_softcapping=2\.0 in its config\)"
)


def test_a_student_of_a_soft_capped_model_is_refused_before_training(tmp_path):
    tiny_gemma2(tmp_path / "gemma2")
    student = FineTune(model=ModelSpec(name_or_path=str(tmp_path / "gemma2")))
    with pytest.raises(NotImplementedError, match=MESSAGE):
        student.configure_model()


def test_a_soft_capped_teacher_is_refused_before_extraction():
    with pytest.raises(NotImplementedError, match=MESSAGE):
        extract_topk(tiny_gemma2(), dataloader=[], writer=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "value", "refused"),
    [
        ("final_logit_softcapping", 30.0, True),
        ("final_logit_softcapping", None, False),
        ("logit_scale", 0.0625, True),  # Cohere
        ("logit_scale", 1.0, False),
        ("logits_scaling", 8.0, True),  # Granite
        ("logits_scaling", 1.0, False),
    ],
)
def test_which_configs_are_refused(name, value, refused):
    model = LlamaForCausalLM(tiny_llama_config(20, layers=1))
    setattr(model.config, name, value)
    if refused:
        with pytest.raises(NotImplementedError, match=rf"\({name}={value!r} in its config\)"):
            check_plain_lm_head(model)
    else:
        check_plain_lm_head(model)
