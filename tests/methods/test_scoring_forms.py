"""Every option scoring against a dense reference computed by hand from the model's logits:
sum, per token, per character (lm-evaluation-harness's acc_norm), per UTF-8 byte (its
acc_bytes) and domain-conditional PMI (Holtzman et al. 2021)."""

from __future__ import annotations

import pytest
import torch

from first_pl.data.option_batch import option_divisor
from first_pl.data.template import OPTION_SCORINGS, PromptTemplate, TemplateError
from first_pl.data.tokenize import TruncationReport, collate, encode
from first_pl.methods.base import MethodModule
from first_pl.tasks import MCExample

EXAMPLES = [
    # "café" is 4 characters and 5 UTF-8 bytes; "red apple" 2 tokens and 9 characters
    MCExample("q0", "Which of these is a fruit?", ("red apple", "dog", "café"), 0),
    MCExample("q1", "Which of these is an animal?", ("apple", "big dog"), 1),
]


class PositionalBigram(MethodModule):
    """Logits at position t depend on its token and on t: `table[token] + offset[t]`, so an
    option after the long prompt and after the short domain premise gets different scores
    (a plain bigram would give PMI 0: both contexts end in ':')."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.table = torch.randn(vocab, vocab, generator=generator) * 3
        self.offset = torch.randn(512, vocab, generator=generator) * 2

    def dense_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.table[input_ids] + self.offset[: input_ids.shape[-1]]

    def logits_at(self, batch, select):
        return self.dense_logits(batch["input_ids"])[select]


def dense_loglik(module: PositionalBigram, context: list[int], option: list[int]) -> float:
    """log P(option | context) from the full-vocabulary log-softmax of every position."""
    tokens = torch.tensor(context + option)
    log_probs = torch.log_softmax(module.dense_logits(tokens).double(), dim=-1)
    return sum(log_probs[len(context) - 1 + j, option[j]].item() for j in range(len(option)))


def reference(module, tokenizer, item, example, scoring: str) -> list[float]:
    """The score of each option, from the definitions (not from the code under test)."""
    prompt = item.input_ids[: item.answer_position + 1]
    premise = tokenizer.encode("Answer:", add_special_tokens=False)
    scores = []
    for text in example.choices:
        option = tokenizer.encode(" " + text, add_special_tokens=False)
        loglik = dense_loglik(module, prompt, option)
        scores.append({
            "option_loglik": loglik,
            "option_loglik_norm_tokens": loglik / len(option),
            "option_loglik_norm_chars": loglik / len(text),
            "option_loglik_norm_bytes": loglik / len(text.encode("utf-8")),
            "option_pmi": loglik - dense_loglik(module, premise, option),
        }[scoring])  # fmt: skip
    return scores


@pytest.mark.parametrize("scoring", OPTION_SCORINGS)
def test_each_scoring_matches_its_dense_reference(tiny_tokenizer, scoring):
    template = PromptTemplate(answer="text", scoring=scoring)
    items = [encode(ex, tiny_tokenizer, template, 128, TruncationReport()) for ex in EXAMPLES]
    batch = collate(items, tiny_tokenizer.pad_token_id)
    module = PositionalBigram(len(tiny_tokenizer))
    out = module.evaluate(batch)
    assert out["scoring"] == scoring
    for b, (item, example) in enumerate(zip(items, EXAMPLES, strict=True)):
        expected = reference(module, tiny_tokenizer, item, example, scoring)
        got = out["candidate_logprobs"][b, : len(expected)].tolist()
        assert got == pytest.approx(expected, abs=2e-4)
    assert out["candidate_mask"].tolist() == [[True, True, True], [True, True, False]]
    assert out["candidate_logprobs"][1, 2].item() == float("-inf")
    assert out["pred"].tolist() == out["candidate_logprobs"].argmax(1).tolist()
    # every confidence is a probability; PMI, a log-ratio, has only the softmax over the options
    probs = out["candidate_probs"]
    assert bool(((probs >= 0) & (probs <= 1)).all()) and bool(((out["confidence"] >= 0) & (out["confidence"] <= 1)).all())
    if scoring == "option_pmi":
        torch.testing.assert_close(probs, out["candidate_logprobs"].softmax(1))
    else:
        torch.testing.assert_close(probs, out["candidate_logprobs"].exp())


def test_pmi_adds_one_domain_row_per_option_at_minus_one(tiny_tokenizer):
    template = PromptTemplate(answer="text", scoring="option_pmi")
    items = [encode(ex, tiny_tokenizer, template, 128, TruncationReport()) for ex in EXAMPLES]
    batch = collate(items, tiny_tokenizer.pad_token_id)
    premise = tiny_tokenizer.encode("Answer:", add_special_tokens=False)
    assert batch["option_example"].tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert batch["option_scale"].tolist() == [1, 1, 1, -1, -1, -1, 1, 1, -1, -1]
    domain_row = batch["option_input_ids"][3, : len(premise) + 2].tolist()
    assert domain_row == premise + tiny_tokenizer.encode(" red apple", add_special_tokens=False)


def test_the_divisors_are_lm_evaluation_harness_lengths():
    # lm-eval: acc_norm divides by len(choice), acc_bytes by len(choice.encode("utf-8")),
    # both of the option text without the " " it puts before each continuation
    assert option_divisor("option_loglik_norm_chars", "café", 3) == 4.0
    assert option_divisor("option_loglik_norm_bytes", "café", 3) == 5.0
    assert option_divisor("option_loglik_norm_tokens", "café", 3) == 3.0
    assert option_divisor("option_loglik", "café", 3) == option_divisor("option_pmi", "café", 3) == 1.0
    with pytest.raises(ValueError, match="'letter' is not an option scoring"):
        option_divisor("letter", "café", 3)


def test_the_normalisations_pick_different_options(tiny_tokenizer):
    # one forward's log-likelihoods, three normalisations: the argmax is the scoring's choice
    module = PositionalBigram(len(tiny_tokenizer))
    picks = {}
    for scoring in OPTION_SCORINGS:
        template = PromptTemplate(answer="text", scoring=scoring)
        items = [encode(ex, tiny_tokenizer, template, 128, TruncationReport()) for ex in EXAMPLES]
        picks[scoring] = module.evaluate(collate(items, tiny_tokenizer.pad_token_id))["pred"].tolist()
    assert len({tuple(p) for p in picks.values()}) > 1, picks


def test_domain_premise_is_the_text_after_the_question_or_given():
    assert PromptTemplate().domain_premise_text == "Answer:"
    assert PromptTemplate(question="{context}Q: {question}\n{options}\n  The answer is").domain_premise_text == (
        "The answer is"
    )
    assert PromptTemplate(domain_premise="A:").domain_premise_text == "A:"
    # evaluation only: a store extracted under the template stays valid
    assert PromptTemplate(domain_premise="A:", scoring="option_pmi").fingerprint() == PromptTemplate().fingerprint()


def test_pmi_without_a_domain_premise_is_refused(tiny_tokenizer):
    template = PromptTemplate(answer="text", scoring="option_pmi", question="{context}{question}\n{options}")
    with pytest.raises(TemplateError, match="template.scoring='option_pmi' needs a domain premise.*template.domain_premise"):
        encode(EXAMPLES[0], tiny_tokenizer, template, 128, TruncationReport())


def test_the_old_per_token_name_is_the_per_token_scoring():
    template = PromptTemplate(answer="text", scoring="option_loglik_norm")
    assert template.resolved_scoring == "option_loglik_norm_tokens"
    with pytest.raises(TemplateError, match="template.scoring must be one of .*option_loglik_norm_bytes.*option_pmi"):
        PromptTemplate(scoring="acc_norm")
