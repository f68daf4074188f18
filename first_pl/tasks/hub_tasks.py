"""CommonsenseQA, BoolQ and OpenBookQA from the hub or from local files in the hub's schema.

Where a hub dataset lacks a labelled split we need, it is carved deterministically: CSQA's and
BoolQ's hub test splits are unlabelled, so our `test` is the hub `validation` split and our
`validation` is 10% of the hub `train` split chosen by a hash of each id.

A local source is a folder of per-split files or one file. A folder laid out like the hub
(`train` and `validation`, no `test`) is mapped as the hub is; a folder that also holds a
`test` file is read split for split (`test` from `test.*`, `validation` from `validation.*`),
since a user who wrote a labelled test file means it as the test split. One file is all the
data there is, so train / validation / test are carved from it disjointly by a hash of each id
(as for BIG-bench); reading it whole for every split would test on the training rows.

Options keep the dataset's own lettering by default (`option_order="source"`: CSQA's and OBQA's
answer keys are letters, and their hub splits are balanced); the data module reports the
answer-position distribution of every split and warns when one letter holds too much, and
`option_order="balanced"` spreads the gold answers evenly over the positions of each split.

The hub schemas carry no task-level instruction; each row's own prompt fields reach the
prompt: CSQA's `question`, OBQA's `question_stem`, BoolQ's `passage` (as the context) and
`question`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from first_pl.tasks.base import (
    SPLITS,
    MCExample,
    SplitFractions,
    Task,
    TaskDataError,
    carve,
    check_mc,
    check_unique_ids,
)
from first_pl.tasks.option_order import check_option_order, ordered
from first_pl.tasks.records import field, is_local, is_single_file, read_rows, split_file


class HubMultipleChoiceTask(Task):
    """Shared loading for hub tasks: split mapping, carving, row parsing, validation."""

    hub_id: str = ""
    hub_config: str | None = None
    # our split -> (hub split, carve this split from it or None)
    split_map: dict[str, tuple[str, str | None]] = {}

    def __init__(
        self,
        source: str | None = None,
        name: str | None = None,
        limit: int | None = None,
        validation_fraction: float = 0.1,
        test_fraction: float = 0.3,
        option_order: str = "source",
    ) -> None:
        self.source = source or self.hub_id
        self.limit = limit
        # validation: carved from the hub train split; test too when the source is one file
        self.fractions = SplitFractions(validation=validation_fraction, test=test_fraction)
        check_option_order(option_order, type(self).__name__)
        self.option_order = option_order
        super().__init__(name)

    def settings(self) -> dict:
        return {
            **super().settings(),
            "source": self.source,
            "limit": self.limit,
            "fractions": vars(self.fractions),
            "option_order": self.option_order,
        }

    def parse_row(self, row: dict[str, Any], index: int, source: str, split: str) -> MCExample:
        raise NotImplementedError

    def parse_rows(self, rows: list[dict[str, Any]], source: str, split: str) -> list[MCExample]:
        examples = [check_mc(self.parse_row(row, i, source, split), source) for i, row in enumerate(rows)]
        check_unique_ids(examples, source)
        return examples

    def load(self, split: str) -> list[MCExample]:
        if split not in SPLITS:
            raise ValueError(f"task {self.name}: split must be one of {list(SPLITS)}, got {split!r}")
        if is_single_file(self.source):
            rows, label = read_rows(self.source, split)
            examples = carve(self.parse_rows(rows, label, "row"), split, self.fractions, salt=self.name)
        else:
            hub_split, carve_as = self.source_split(split)
            rows, label = read_rows(self.source, hub_split, self.hub_config, asked=split)
            examples = self.parse_rows(rows, label, hub_split)
            if carve_as is not None:
                hub_fractions = SplitFractions(validation=self.fractions.validation, test=0.0)
                examples = carve(examples, carve_as, hub_fractions, salt=self.name)
        return ordered(self.take_limit(examples, split, self.limit), self.option_order, salt=self.name)

    def source_split(self, split: str) -> tuple[str, str | None]:
        """The source split that `split` reads and the split to carve from it, if any: the hub's
        mapping, or split for split from a local folder that holds a `test` file."""
        if is_local(self.source) and split_file(Path(self.source).expanduser(), "test") is not None:
            return split, None
        return self.split_map[split]


def letter_index(answer_key: str, labels: list[str], source: str, index: int) -> int:
    """Position of an answer letter among the row's choice labels."""
    if answer_key not in labels:
        unlabelled = (
            " (an unlabelled row, like the hub's test split: a folder holding a test file is read split "
            "for split, so that file must hold answers)"
            if not answer_key.strip()
            else ""
        )
        raise TaskDataError(
            f"{source}: row {index} field 'answerKey' is {answer_key!r}; expected one of {labels}{unlabelled}"
        )
    return labels.index(answer_key)


def parse_choices(row: dict[str, Any], source: str, index: int) -> tuple[list[str], list[str]]:
    """The hub's `choices: {label: [...], text: [...]}` column, one label per text."""
    choices = field(row, "choices", source, index)
    if isinstance(choices, str) and source.endswith(".csv"):
        raise TaskDataError(
            f"{source}: row {index} field 'choices' is text: a CSV file cannot hold the nested "
            "{'label': [...], 'text': [...]} column; give this task a .jsonl, .json or .parquet file"
        )
    if not isinstance(choices, dict) or "label" not in choices or "text" not in choices:
        raise TaskDataError(f"{source}: row {index} field 'choices' must be {{'label': [...], 'text': [...]}}")
    labels, texts = list(choices["label"]), list(choices["text"])
    if len(labels) != len(texts):
        raise TaskDataError(
            f"{source}: row {index} field 'choices' has {len(labels)} labels {labels} but {len(texts)} texts; "
            "expected one text per label"
        )
    return labels, texts


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
        if isinstance(answer, str) and answer.lower() in ("true", "false"):
            answer = answer.lower() == "true"
        elif isinstance(answer, bool | int | float) and answer in (0, 1):
            answer = bool(answer)
        else:
            raise TaskDataError(f"{source}: row {index} field 'answer' is {answer!r}; expected true or false")
        question = str(field(row, "question", source, index)).strip()
        return MCExample(
            id=f"{split}-{index}",
            question=question[:1].upper() + question[1:] + "?",
            choices=("yes", "no"),
            answer=0 if answer else 1,
            context=str(field(row, "passage", source, index)),
        )
