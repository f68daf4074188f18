"""CommonsenseQA, BoolQ and OpenBookQA from the hub or from local files in the hub's schema.

Where a hub dataset lacks a labelled split we need, it is carved deterministically: CSQA's and
BoolQ's hub test splits are unlabelled, so our `test` is the hub `validation` split and our
`validation` is 10% of the hub `train` split chosen by a hash of each id.
"""

from __future__ import annotations

from typing import Any

from first_pl.tasks.base import (
    MCExample,
    SplitFractions,
    Task,
    TaskDataError,
    carve,
    check_mc,
    check_unique_ids,
)
from first_pl.tasks.records import field, read_rows


class HubMultipleChoiceTask(Task):
    """Shared loading for hub tasks: split mapping, carving, row parsing, validation."""

    hub_id: str = ""
    hub_config: str | None = None
    # our split -> (hub split, carve this split from it or None)
    split_map: dict[str, tuple[str, str | None]] = {}

    def __init__(self, source: str | None = None, name: str | None = None, limit: int | None = None) -> None:
        self.source = source or self.hub_id
        self.limit = limit
        super().__init__(name)

    def settings(self) -> dict:
        return {**super().settings(), "source": self.source, "limit": self.limit}

    def parse_row(self, row: dict[str, Any], index: int, source: str, split: str) -> MCExample:
        raise NotImplementedError

    def load(self, split: str) -> list[MCExample]:
        if split not in self.split_map:
            raise ValueError(f"task {self.name}: split must be one of {sorted(self.split_map)}, got {split!r}")
        hub_split, carve_as = self.split_map[split]
        rows, label = read_rows(self.source, hub_split, self.hub_config)
        examples = [check_mc(self.parse_row(row, i, label, hub_split), label) for i, row in enumerate(rows)]
        check_unique_ids(examples, label)
        if carve_as is not None:
            examples = carve(examples, carve_as, SplitFractions(validation=0.1, test=0.0), salt=self.name)
        return examples[: self.limit] if self.limit else examples


def letter_index(answer_key: str, labels: list[str], source: str, index: int) -> int:
    """Position of an answer letter among the row's choice labels."""
    if answer_key not in labels:
        raise TaskDataError(
            f"{source}: row {index} field 'answerKey' is {answer_key!r}; expected one of {labels}"
        )
    return labels.index(answer_key)


def parse_choices(row: dict[str, Any], source: str, index: int) -> tuple[list[str], list[str]]:
    """The hub's `choices: {label: [...], text: [...]}` column."""
    choices = field(row, "choices", source, index)
    if not isinstance(choices, dict) or "label" not in choices or "text" not in choices:
        raise TaskDataError(f"{source}: row {index} field 'choices' must be {{'label': [...], 'text': [...]}}")
    return list(choices["label"]), list(choices["text"])


class LetteredChoicesTask(HubMultipleChoiceTask):
    """Rows with `choices: {label, text}` and a lettered `answerKey` (CSQA, OBQA)."""

    question_field = "question"

    def parse_row(self, row: dict[str, Any], index: int, source: str, split: str) -> MCExample:
        labels, texts = parse_choices(row, source, index)
        answer = letter_index(str(field(row, "answerKey", source, index)), labels, source, index)
        return MCExample(
            id=str(field(row, "id", source, index)),
            question=str(field(row, self.question_field, source, index)),
            choices=tuple(texts),
            answer=answer,
        )


class CommonsenseQA(LetteredChoicesTask):
    """`tau/commonsense_qa`: 5 options, lettered A-E."""

    hub_id = "tau/commonsense_qa"
    split_map = {"train": ("train", "train"), "validation": ("train", "validation"), "test": ("validation", None)}

    def default_name(self) -> str:
        return "csqa"


class OpenBookQA(LetteredChoicesTask):
    """`allenai/openbookqa` (config `main`): 4 options."""

    hub_id = "allenai/openbookqa"
    hub_config = "main"
    question_field = "question_stem"
    split_map = {"train": ("train", None), "validation": ("validation", None), "test": ("test", None)}

    def default_name(self) -> str:
        return "obqa"


class BoolQ(HubMultipleChoiceTask):
    """`google/boolq`: a passage and a yes/no question, as options A. yes / B. no.

    The hub rows carry no id, so the id is the hub split and the row number.
    """

    hub_id = "google/boolq"
    split_map = {"train": ("train", "train"), "validation": ("train", "validation"), "test": ("validation", None)}

    def default_name(self) -> str:
        return "boolq"

    def parse_row(self, row: dict[str, Any], index: int, source: str, split: str) -> MCExample:
        answer = field(row, "answer", source, index)
        if isinstance(answer, str):
            if answer.lower() not in ("true", "false"):
                raise TaskDataError(f"{source}: row {index} field 'answer' is {answer!r}; expected true or false")
            answer = answer.lower() == "true"
        question = str(field(row, "question", source, index)).strip()
        return MCExample(
            id=f"{split}-{index}",
            question=question[:1].upper() + question[1:] + "?",
            choices=("yes", "no"),
            answer=0 if answer else 1,
            context=str(field(row, "passage", source, index)),
        )
