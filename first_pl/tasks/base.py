"""What every task gives the data modules: examples with stable ids, split deterministically."""

from __future__ import annotations

import hashlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

SPLITS = ("train", "validation", "test")

log = logging.getLogger(__name__)


class TaskDataError(ValueError):
    """Bad task data; the message names the file, row and field."""


@dataclass(frozen=True)
class MCExample:
    """One multiple-choice question. `answer` indexes `choices`; letters come from the template.

    `instruction` is the source's own instruction for its questions (BIG-bench's `task_prefix`),
    asked before the context and the question: without it a question such as "Output T for true
    and F for false" is never posed.
    """

    id: str
    question: str
    choices: tuple[str, ...]
    answer: int
    context: str = ""
    kind: str = ""
    instruction: str = ""


@dataclass(frozen=True)
class InstructionExample:
    """One instruction-following example in Alpaca's schema (instruction, input, output)."""

    id: str
    instruction: str
    input: str
    output: str


Example = MCExample | InstructionExample


def examples_fingerprint(examples: Sequence[Example]) -> str:
    """Identity of a split's content: every example's id and fields, in id order.

    Two runs share it only when they were scored on the same questions, options and answers;
    ids alone do not say so (a GeneratedMC task with another seed reuses them).
    """
    rows = sorted((asdict(example) for example in examples), key=lambda row: row["id"])
    blob = json.dumps(rows, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class SplitFractions:
    """Fractions for carving splits out of data that has fewer splits than we need."""

    validation: float = 0.1
    test: float = 0.3

    def __post_init__(self) -> None:
        if not (0 <= self.validation < 1 and 0 <= self.test < 1 and self.validation + self.test < 1):
            raise ValueError(
                f"split fractions must be in [0, 1) and leave room for train, got validation="
                f"{self.validation}, test={self.test}"
            )


def stable_bucket(example_id: str, salt: str = "") -> float:
    """A number in [0, 1) fixed by the id alone, so a split never depends on file order."""
    digest = hashlib.sha256(f"{salt}:{example_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def carve(
    examples: list[Example],
    split: str,
    fractions: SplitFractions,
    salt: str,
    key: Callable[[Example], str] | None = None,
) -> list[Example]:
    """Deterministic train / validation / test by a hash of each example's `key` (default its
    id), so the split is stable under reordering; a key on the content also keeps identical
    questions together in one split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    low, high = {
        "validation": (0.0, fractions.validation),
        "test": (fractions.validation, fractions.validation + fractions.test),
        "train": (fractions.validation + fractions.test, 1.0),
    }[split]
    key = key or (lambda ex: ex.id)
    return [ex for ex in examples if low <= stable_bucket(key(ex), salt) < high]


def content_key(question: str, choices: Sequence[str]) -> str:
    """A hash of a question and its options in any order: an identity that survives inserting,
    deleting or reordering other examples and reordering this one's options."""
    blob = json.dumps([question, sorted(choices)], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def check_unique_ids(examples: list[Example], source: str) -> None:
    """Ids join examples with teacher stores; a duplicate would silently mix two examples."""
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            raise TaskDataError(f"{source}: duplicate example id {ex.id!r}")
        seen.add(ex.id)


def check_mc(example: MCExample, source: str, max_options: int | None = 5) -> MCExample:
    """Validate one multiple-choice example; errors name the source, the id and the field.

    `max_options=None` sets no upper bound (the template's letters then decide what fits).
    """
    upper = max_options if max_options is not None else len(example.choices)
    if not 2 <= len(example.choices) <= upper:
        raise TaskDataError(
            f"{source}: example {example.id!r} field 'choices' has {len(example.choices)} options; "
            + (f"expected 2 to {max_options}" if max_options is not None else "expected at least 2")
        )
    if not 0 <= example.answer < len(example.choices):
        raise TaskDataError(
            f"{source}: example {example.id!r} field 'answer' is {example.answer}, out of range for "
            f"{len(example.choices)} choices"
        )
    return example


class Task(ABC):
    """A source of examples. Subclasses are chosen by `class_path` in a data config."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or self.default_name()
        self.limit_warned: set[str] = set()

    @abstractmethod
    def default_name(self) -> str:
        """Name used in logged keys (`val/<name>/acc`) and file names."""

    @abstractmethod
    def load(self, split: str) -> list[Example]:
        """Examples of one split, in a fixed order, ids unique."""

    def take_limit(self, examples: list, split: str, limit: int | None) -> list:
        """The first `limit` examples of a split; a limit above the split's size is said once
        per split, with both numbers, since the run then evaluates fewer than it asked for."""
        if limit and limit > len(examples) and split not in self.limit_warned:
            self.limit_warned.add(split)
            log.warning(
                f"task {self.name!r} split {split!r}: limit {limit} is above the split's "
                f"{len(examples)} examples; using all {len(examples)}"
            )
        return examples[:limit] if limit else examples

    def settings(self) -> dict:
        """The settings that decide the examples (for fingerprints); subclasses add theirs."""
        return {"class": type(self).__name__, "name": self.name}

    def fingerprint(self) -> str:
        """Identity of the task's settings, for teacher stores and stage caches."""
        blob = json.dumps(self.settings(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings()})"
