"""Predictions that follow an option's form rather than the question: a warning, not a metric.

A model that picks the longest (or shortest) option, or one position, or one option text, in
almost every example of a task has learnt something about the scoring or the answer format,
not the task: its accuracy is then the share of gold answers that happen to have that form
(a per-token length normalisation that prefers 3-token "implausible" over 1-token
"plausible" scores exactly the share of "implausible" gold answers). `prediction_bias` finds
those patterns, each with how often the gold answer has the same form, so that a reader can
tell a form the gold answer also follows from one only the predictions follow.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

BIAS_SHARE = 0.9  # a pattern held by more than this share of the predictions is reported
BIAS_MIN_EXAMPLES = 20  # below this many examples a 90% share is too likely by chance


@dataclass(frozen=True)
class Bias:
    """Predictions of one form: `kind` is longest_tokens, shortest_tokens, longest_bytes,
    shortest_bytes (among the examples whose options differ in that length), position or text
    (the most frequent one, `value`), held by `share` of the `n` examples it applies to, and by
    `gold_share` of their gold answers."""

    kind: str
    value: int | str | None
    share: float
    gold_share: float
    n: int

    def as_dict(self) -> dict[str, int | str | float | None]:
        return asdict(self)

    def describe(self, label: Callable[[int], str] = str) -> str:
        """'the longest option in tokens in 97% of 100 examples (gold 51%)'; `label` names a position."""
        if self.kind == "position":
            what = f"option {label(int(self.value or 0))}"
        elif self.kind == "text":
            what = f"option text {self.value!r}"
        else:
            length, unit = self.kind.split("_")
            what = f"the {length} option in {unit}"
        return f"{what} in {self.share:.0%} of {self.n} examples (gold answer: {self.gold_share:.0%})"


def length_bias(kind: str, lengths: Sequence[Sequence[int]], preds: Sequence[int],
                golds: Sequence[int]) -> tuple[float, float, int]:  # fmt: skip
    """(share of predictions, share of gold answers, examples) at the longest or shortest
    length, over the examples whose options are not all of one length."""
    pick = max if kind == "longest" else min
    hits, gold_hits, n = 0, 0, 0
    for sizes, pred, gold in zip(lengths, preds, golds, strict=True):
        if len(set(sizes)) < 2:
            continue
        target = pick(sizes)
        n += 1
        hits += sizes[pred] == target
        gold_hits += 0 <= gold < len(sizes) and sizes[gold] == target
    return (hits / n, gold_hits / n, n) if n else (0.0, 0.0, 0)


def prediction_bias(
    preds: Sequence[int],
    golds: Sequence[int],
    choices: Sequence[Sequence[str]],
    choice_tokens: Sequence[Sequence[int]],
    share: float = BIAS_SHARE,
    min_examples: int = BIAS_MIN_EXAMPLES,
) -> list[Bias]:
    """Every form that more than `share` of the predictions follow, among tasks with at least
    `min_examples` examples (to which it applies). `choices` / `choice_tokens` are each
    example's option texts and continuation token counts; examples without them count for the
    position only."""
    found = []
    n = len(preds)
    if n >= min_examples:
        position, count = Counter(preds).most_common(1)[0]
        found.append(Bias("position", position, count / n, sum(g == position for g in golds) / n, n))
    known = [i for i in range(n) if len(choices[i]) > preds[i] and len(choice_tokens[i]) == len(choices[i])]
    picked = [choices[i][preds[i]] for i in known]
    if len(known) >= min_examples:
        text, count = Counter(picked).most_common(1)[0]
        gold_text = sum(0 <= golds[i] < len(choices[i]) and choices[i][golds[i]] == text for i in known)
        found.append(Bias("text", text, count / len(known), gold_text / len(known), len(known)))
    measures = {
        "tokens": [list(choice_tokens[i]) for i in known],
        "bytes": [[len(text.encode("utf-8")) for text in choices[i]] for i in known],
    }
    for unit, lengths in measures.items():
        for kind in ("longest", "shortest"):
            pred_share, gold_share, m = length_bias(
                kind, lengths, [preds[i] for i in known], [golds[i] for i in known]
            )
            if m >= min_examples:
                found.append(Bias(f"{kind}_{unit}", None, pred_share, gold_share, m))
    return [bias for bias in found if bias.share > share]
