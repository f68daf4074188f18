"""Option scoring: letter / first token / option log-likelihood (sum and per token), on
hand-computed log-probabilities and on a bigram model whose every log-probability is known."""

from __future__ import annotations

import math

import pytest
import torch

from first_pl.callbacks.evaluation import option_softmax
from first_pl.data.batch import IGNORE_INDEX
from first_pl.data.template import PromptTemplate, TemplateError
from first_pl.data.tokenize import TruncationReport, collate, encode
from first_pl.methods.base import MethodModule
from first_pl.methods.scoring import choice_output, option_scores, target_log_probs
from first_pl.tasks import MCExample

BATCH = {"gold": torch.tensor([0, 1]), "example_id": ["a", "b"]}


def hand_scores(normalise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    # example 0: option 0 has two tokens (log p -1, -2), option 1 one token (-2.5);
    # example 1: options of one token each (-0.5, -3.0) and a third of three (-1, -1, -1).
    position_log_probs = torch.tensor([-1.0, -2.0, -2.5, -0.5, -3.0, -1.0, -1.0, -1.0])
    position_row = torch.tensor([0, 0, 1, 2, 3, 4, 4, 4])
    example, choice = torch.tensor([0, 0, 1, 1, 1]), torch.tensor([0, 1, 0, 1, 2])
    scale = 1 / torch.tensor([2.0, 1.0, 1.0, 1.0, 3.0]) if normalise else torch.ones(5)
    return option_scores(position_log_probs, position_row, example, choice, scale, 2)


def test_option_loglik_sums_and_normalises_by_tokens():
    scores, mask = hand_scores(normalise=False)
    assert mask.tolist() == [[True, True, False], [True, True, True]]
    assert scores[0, :2].tolist() == [-3.0, -2.5] and scores[1].tolist() == [-0.5, -3.0, -3.0]
    assert scores[0, 2] == float("-inf")
    normalised, _ = hand_scores(normalise=True)
    assert normalised[0, :2].tolist() == [-1.5, -2.5] and normalised[1].tolist() == [-0.5, -3.0, -1.0]


def test_length_normalisation_changes_the_prediction_and_confidences_follow_the_scoring():
    summed = choice_output(*hand_scores(normalise=False), BATCH, "option_loglik")
    per_token = choice_output(*hand_scores(normalise=True), BATCH, "option_loglik_norm_tokens")
    assert summed["pred"].tolist() == [1, 0] and per_token["pred"].tolist() == [0, 0]
    assert summed["correct"].tolist() == [False, False] and per_token["correct"].tolist() == [True, False]
    # full-vocab confidence: the chosen option's probability, exp(-2.5) and exp(-0.5)
    assert summed["confidence"].tolist() == pytest.approx([math.exp(-2.5), math.exp(-0.5)])
    assert summed["candidate_probs"][0, 2] == 0.0 and summed["scoring"] == "option_loglik"
    # renormalised confidence: the softmax over the options' scores
    soft = option_softmax(summed["candidate_logprobs"].double(), summed["candidate_mask"])
    assert soft[0, 1].item() == pytest.approx(1 / (1 + math.exp(-0.5)))
    assert soft[1, 0].item() == pytest.approx(1 / (1 + 2 * math.exp(-2.5)))
    assert soft[0, 2].item() == 0.0


def test_renormalised_confidence_survives_underflow_and_argmax_is_in_log_space():
    scores = torch.tensor([[-300.0, -299.0, -305.0]])
    out = choice_output(scores, torch.ones(1, 3, dtype=torch.bool), {"gold": torch.tensor([1]), "example_id": ["x"]})
    assert out["pred"].item() == 1 and out["confidence"].item() == 0.0  # exp underflows in float32
    soft = option_softmax(out["candidate_logprobs"].double(), out["candidate_mask"])
    expected = 1 / (1 + math.exp(-1) + math.exp(-6))
    assert soft[0, 1].item() == pytest.approx(expected)


def test_target_log_probs_is_the_log_softmax_at_the_target():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    expected = [2 - math.log(math.exp(2) + 1 + math.exp(-1)), -math.log(3)]
    assert target_log_probs(logits, torch.tensor([0, 2])).tolist() == pytest.approx(expected)


class Bigram(MethodModule):
    """Logits at a position depend only on its token: `table[token]`; no transformer at all."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.table = torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(0)) * 3

    def logits_at(self, batch, select):
        return self.table[batch["input_ids"][select]]


def reference_loglik(table, prompt, option) -> float:
    tokens = prompt + option
    log_probs = torch.log_softmax(table, dim=-1)
    return sum(log_probs[tokens[len(prompt) - 1 + j], option[j]].item() for j in range(len(option)))


@pytest.mark.parametrize("scoring", ["option_loglik", "option_loglik_norm_tokens", "option_loglik_norm"])
def test_module_scores_multi_token_options_sharing_a_first_token(tiny_tokenizer, scoring):
    # "red apple" and "red" share their first token: first_token scoring refuses them,
    # option log-likelihood tells them apart by the whole continuation.
    examples = [
        MCExample("q0", "Which of these is a fruit?", ("red apple", "dog", "red"), 0),
        MCExample("q1", "Which of these is an animal?", ("apple", "big dog"), 1),
    ]
    with pytest.raises(TemplateError, match="both start with token 'red'"):
        encode(examples[0], tiny_tokenizer, PromptTemplate(answer="text"), 128, TruncationReport())
    template = PromptTemplate(answer="text", scoring=scoring)
    items = [encode(ex, tiny_tokenizer, template, 128, TruncationReport()) for ex in examples]
    batch = collate(items, tiny_tokenizer.pad_token_id)
    assert batch["scoring"] == template.resolved_scoring and "candidate_ids" not in batch
    assert batch["option_example"].tolist() == [0, 0, 0, 1, 1]
    assert batch["option_choice"].tolist() == [0, 1, 2, 0, 1]
    module = Bigram(len(tiny_tokenizer))
    out = module.evaluate(batch)
    for b, (item, example) in enumerate(zip(items, examples, strict=True)):
        prompt = item.input_ids[: item.answer_position + 1]
        for c, choice in enumerate(example.choices):
            option = tiny_tokenizer.encode(" " + choice, add_special_tokens=False)
            expected = reference_loglik(module.table, prompt, option)
            if scoring != "option_loglik":  # the per-token form, under either name
                expected /= len(option)
            assert out["candidate_logprobs"][b, c].item() == pytest.approx(expected, abs=1e-4)
    assert out["candidate_mask"].tolist() == [[True, True, True], [True, True, False]]
    best = out["candidate_logprobs"].argmax(1)
    assert out["pred"].tolist() == best.tolist()


def test_option_rows_shift_labels_onto_the_option_tokens(tiny_tokenizer):
    template = PromptTemplate(answer="text", scoring="option_loglik")
    example = MCExample("q", "Which of these is a fruit?", ("red apple", "dog"), 0)
    item = encode(example, tiny_tokenizer, template, 128, TruncationReport())
    batch = collate([item], tiny_tokenizer.pad_token_id)
    prompt_length = item.answer_position + 1
    row, labels = batch["option_input_ids"][0], batch["option_labels"][0]
    option = tiny_tokenizer.encode(" red apple", add_special_tokens=False)
    assert row[prompt_length : prompt_length + 2].tolist() == option
    assert labels[prompt_length - 1 : prompt_length + 1].tolist() == option
    assert (labels != IGNORE_INDEX).sum().item() == 2
    assert batch["option_attention_mask"][1].sum().item() == prompt_length + 1  # "dog" row


def test_long_option_drops_more_prompt_for_its_rows_and_counts_it(tiny_tokenizer):
    template = PromptTemplate(answer="text", scoring="option_loglik")
    example = MCExample("q", "apple " * 20, ("dog", "red apple red apple red apple"), 0)
    report = TruncationReport()
    item = encode(example, tiny_tokenizer, template, 40, report)
    prompt = item.option_prompt
    assert len(prompt) + 6 == 40 and len(prompt) < item.answer_position + 1
    assert item.truncated_tokens == item.answer_position + 1 - len(prompt)
    assert report.truncated == 1 and report.tokens_dropped == item.truncated_tokens


def test_scoring_option_is_validated_by_name():
    with pytest.raises(TemplateError, match="template.scoring must be one of .* got 'sum'"):
        PromptTemplate(scoring="sum")
    with pytest.raises(TemplateError, match="template.scoring='first_token' .*template.answer='letter'.*use 'letter'"):
        PromptTemplate(scoring="first_token")
    assert PromptTemplate(answer="text").resolved_scoring == "first_token"
    # evaluation only: a store extracted under the template stays valid
    assert PromptTemplate(scoring="option_loglik").fingerprint() == PromptTemplate().fingerprint()
