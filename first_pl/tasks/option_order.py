"""Where the right answer sits among the options: a balanced, deterministic assignment, and its
report.

Source files often list the correct option first (every example of BIG-bench `physics` does),
so lettering options in file order lets a model that always says " A" score 100%. An
independent shuffle per example balances only on average: over 93 two-option questions one
position's count has a standard deviation of 4.8, so always giving one letter can score 55% or
more by chance, which decides whether a weak model beats a constant. `balanced` instead gives
every position an equal share of the gold answers within each split: among the examples with
C options, ranked by a hash of (salt, id), the gold goes to position rank mod C, and the
left-over `n mod C` go to the positions furthest below their share in the split so far. The
other options follow in the order of a hash of (id, option text). It needs no random state, is
the same on every run and machine and does not depend on the order of options in the file; an
example's letter does depend on which other examples share its split, which is what makes the
counts exact (a changed split changes letters; a teacher store's gold check catches that).

`AnswerPositions` counts the gold letter per task split and flags a letter that holds more
than its share plus noise, so a loader whose order still carries the answer is caught in the
data stage (the data module logs it for every task split, with the constant-answer baseline).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterable, Sequence
from fractions import Fraction

from first_pl.tasks.base import MCExample

OPTION_ORDERS = ("balanced", "source")
# A letter is flagged when its count exceeds its expected count by this many standard deviations.
SKEW_SIGMAS = 4.0


def check_option_order(option_order: str, owner: str) -> None:
    """Refuse an unknown `option_order`, naming the task class that was given it."""
    if option_order not in OPTION_ORDERS:
        raise ValueError(f"{owner}.option_order must be one of {OPTION_ORDERS}, got {option_order!r}")


def position_label(position: int, letters: str) -> str:
    """The template's letter for a position, or `#n` past its letters."""
    return letters[position] if position < len(letters) else f"#{position + 1}"


def digest(*parts: str) -> bytes:
    return hashlib.sha256("\x00".join(parts).encode()).digest()


def placed(example: MCExample, position: int) -> MCExample:
    """The example with its gold option at `position` and the others in the order of a hash of
    (id, text); two options with the same text keep their source order."""
    others = sorted(
        (i for i in range(len(example.choices)) if i != example.answer),
        key=lambda i: (digest(example.id, example.choices[i]), i),
    )
    order = [*others[:position], example.answer, *others[position:]]
    return dataclasses.replace(example, choices=tuple(example.choices[i] for i in order), answer=position)


def gold_positions(examples: Sequence[MCExample], salt: str) -> list[int]:
    """The balanced gold position of each example (see the module docstring), in input order.

    Within each option count every position gets floor or ceil of its share; the left-overs
    go to the positions with the smallest surplus so far (count minus expected count, in exact
    fractions), so the split as a whole stays within one of its expected counts as well.
    """
    surplus: dict[int, Fraction] = {}
    out = [0] * len(examples)
    by_count: dict[int, list[int]] = {}
    for index, ex in enumerate(examples):
        by_count.setdefault(len(ex.choices), []).append(index)
    for count in sorted(by_count):
        ranked = sorted(by_count[count], key=lambda i: (digest(salt, examples[i].id), examples[i].id))
        rounds, left = divmod(len(ranked), count)
        spare = sorted(range(count), key=lambda p: (surplus.get(p, Fraction(0)), p))[:left]
        positions = [p for _ in range(rounds) for p in range(count)] + spare
        for index, position in zip(ranked, positions, strict=True):
            out[index] = position
        share = Fraction(len(ranked), count)
        for p in range(count):
            surplus[p] = surplus.get(p, Fraction(0)) + positions.count(p) - share
    return out


def constant_answer(counts: Sequence[int]) -> tuple[int, float]:
    """The position to always answer that scores best, given the gold counts per position, and
    its accuracy (a fraction; the first such position on a tie): the floor a model must beat."""
    best = max(range(len(counts)), key=lambda i: (counts[i], -i))
    total = sum(counts)
    return best, counts[best] / total if total else 0.0


def ordered(examples: Iterable[MCExample], option_order: str, salt: str) -> list[MCExample]:
    """Apply `option_order` ("balanced" or "source") to one split's examples."""
    examples = list(examples)
    if option_order == "source":
        return examples
    return [placed(ex, p) for ex, p in zip(examples, gold_positions(examples, salt), strict=True)]


@dataclasses.dataclass
class AnswerPositions:
    """Gold-answer counts per option position, with what a balanced order would give.

    A position's expected count is the sum over examples offering it of 1 / (options of that
    example); its variance is the sum of p (1 - p). Both are exact for a uniformly random order.
    """

    counts: list[int]
    expected: list[float]
    variance: list[float]

    @classmethod
    def of(cls, examples: Iterable[MCExample]) -> AnswerPositions:
        counts: list[int] = []
        expected: list[float] = []
        variance: list[float] = []
        for ex in examples:
            n = len(ex.choices)
            while len(counts) < n:
                counts.append(0)
                expected.append(0.0)
                variance.append(0.0)
            counts[ex.answer] += 1
            for position in range(n):
                expected[position] += 1 / n
                variance[position] += (1 / n) * (1 - 1 / n)
        return cls(counts, expected, variance)

    @property
    def total(self) -> int:
        return sum(self.counts)

    def constant_answer(self) -> tuple[int, float]:
        """The best position to always answer and the accuracy that scores (a fraction)."""
        return constant_answer(self.counts)

    def skewed(self, letters: str) -> list[str]:
        """Letters holding more than their share plus `SKEW_SIGMAS` standard deviations."""
        return [
            position_label(i, letters)
            for i, (count, mean, var) in enumerate(zip(self.counts, self.expected, self.variance, strict=True))
            if count > mean + SKEW_SIGMAS * math.sqrt(var)
        ]

    def summary(self, letters: str) -> str:
        """`A 26 (26.0 expected), B 27 (26.0), ...`: one line for the data-stage log."""
        parts = [
            f"{position_label(i, letters)} {count} ({mean:.1f})"
            for i, (count, mean) in enumerate(zip(self.counts, self.expected, strict=True))
        ]
        return ", ".join(parts)
