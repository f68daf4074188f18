"""`prediction_bias`: predictions that follow an option's length, position or text in more
than 90% of a task's examples, on constructed cases."""

from __future__ import annotations

from first_pl.metrics.prediction_bias import prediction_bias

# "plausible" is 1 token, "implausible" 3 (the per-token normalisation favours it)
TOKENS = {"plausible": 1, "implausible": 3}


def task(n: int) -> tuple[list[tuple[str, ...]], list[list[int]], list[int]]:
    """n two-option examples, options in alternating order, gold alternating every 3."""
    choices = [("plausible", "implausible") if i % 2 else ("implausible", "plausible") for i in range(n)]
    tokens = [[TOKENS[text] for text in pair] for pair in choices]
    golds = [i % 3 % 2 for i in range(n)]
    return choices, tokens, golds


def test_always_the_longest_option_is_found_by_length_and_text_not_position():
    choices, tokens, golds = task(40)
    preds = [pair.index("implausible") for pair in choices]  # position alternates: 50%
    found = {bias.kind: bias for bias in prediction_bias(preds, golds, choices, tokens)}
    assert set(found) == {"text", "longest_tokens", "longest_bytes"}
    assert found["text"].value == "implausible" and found["text"].share == 1.0 and found["text"].n == 40
    gold_implausible = sum(choices[i][golds[i]] == "implausible" for i in range(40)) / 40
    assert found["longest_tokens"].gold_share == found["text"].gold_share == gold_implausible
    assert found["longest_tokens"].describe() == (
        f"the longest option in tokens in 100% of 40 examples (gold answer: {gold_implausible:.0%})"
    )


def test_one_position_is_found_and_named_by_its_letter():
    choices, tokens, golds = task(40)
    preds = [1] * 37 + [0] * 3  # 92.5% position B; texts and lengths alternate
    (bias,) = prediction_bias(preds, golds, choices, tokens)
    assert (bias.kind, bias.value, bias.share) == ("position", 1, 37 / 40)
    assert bias.describe("AB".__getitem__).startswith("option B in 92% of 40 examples")


def test_no_warning_at_90_percent_or_below_20_examples():
    choices, tokens, golds = task(40)
    ninety = [pair.index("implausible") for pair in choices[:36]] + [pair.index("plausible") for pair in choices[36:]]
    assert prediction_bias(ninety, golds, choices, tokens) == []  # exactly 90%: not more
    small_choices, small_tokens, small_golds = task(19)
    preds = [pair.index("implausible") for pair in small_choices]
    assert prediction_bias(preds, small_golds, small_choices, small_tokens) == []


def test_examples_with_options_of_one_length_do_not_count_for_length():
    choices = [("dog", "cat")] * 30  # one length: neither longest nor shortest
    assert [b.kind for b in prediction_bias([0] * 30, [0] * 30, choices, [[1, 1]] * 30)] == ["position", "text"]
