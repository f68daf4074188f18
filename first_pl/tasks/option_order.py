"""Where the right answer sits among the options: a deterministic shuffle, and its balance report.

Source files often list the correct option first (every example of BIG-bench `physics` does),
so lettering options in file order lets a model that always says " A" score 100%. The shuffle
orders each example's options by a hash of (example id, option text): it is the same on every
run and machine, does not depend on the order in the file at all, and needs no random state.

`AnswerPositions` counts the gold letter per task split and flags a letter that holds more
than its share plus noise, so a loader whose order still carries the answer is caught in the
data stage (the data module logs it for every task split).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterable

from first_pl.tasks.base import MCExample

OPTION_ORDERS = ("shuffled", "source")
# A letter is flagged when its count exceeds its expected count by this many standard deviations.
SKEW_SIGMAS = 4.0


def check_option_order(option_order: str, owner: str) -> None:
    """Refuse an unknown `option_order`, naming the task class that was given it."""
    if option_order not in OPTION_ORDERS:
        raise ValueError(f"{owner}.option_order must be one of {OPTION_ORDERS}, got {option_order!r}")


def option_rank(example_id: str, text: str) -> bytes:
    return hashlib.sha256(f"{example_id}\x00{text}".encode()).digest()


def shuffled(example: MCExample) -> MCExample:
    """The example with its options in a fixed pseudo-random order seeded by its id.

    Ties (two options with the same text) keep their source order, so the result is a
    permutation even for duplicated texts.
    """
    order = sorted(range(len(example.choices)), key=lambda i: (option_rank(example.id, example.choices[i]), i))
    return dataclasses.replace(
        example, choices=tuple(example.choices[i] for i in order), answer=order.index(example.answer)
    )


def ordered(examples: Iterable[MCExample], option_order: str) -> list[MCExample]:
    """Apply `option_order` ("shuffled" or "source") to every example."""
    return [shuffled(ex) for ex in examples] if option_order == "shuffled" else list(examples)


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

    def skewed(self, letters: str) -> list[str]:
        """Letters holding more than their share plus `SKEW_SIGMAS` standard deviations."""
        return [
            letters[i] if i < len(letters) else f"#{i + 1}"
            for i, (count, mean, var) in enumerate(zip(self.counts, self.expected, self.variance, strict=True))
            if count > mean + SKEW_SIGMAS * math.sqrt(var)
        ]

    def summary(self, letters: str) -> str:
        """`A 26 (26.0 expected), B 27 (26.0), ...`: one line for the data-stage log."""
        parts = [
            f"{letters[i] if i < len(letters) else f'#{i + 1}'} {count} ({mean:.1f})"
            for i, (count, mean) in enumerate(zip(self.counts, self.expected, strict=True))
        ]
        return ", ".join(parts)
