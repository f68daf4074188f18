"""Alpaca-style instruction data (`tatsu-lab/alpaca` or a local file in its schema).

The hub dataset has only a train split (a local source is one file, or a folder's train file);
validation and test are carved from it by a hash of each id, so they never share a row with
train. Rows carry no id, so the id is the row number in the source.
"""

from __future__ import annotations

from first_pl.tasks.base import InstructionExample, SplitFractions, Task, TaskDataError, carve
from first_pl.tasks.records import field, optional_text, read_rows


class Alpaca(Task):
    """Instruction / input / output rows, used to train students out of domain."""

    def __init__(
        self,
        source: str = "tatsu-lab/alpaca",
        name: str | None = None,
        limit: int | None = None,
        validation_fraction: float = 0.05,
        test_fraction: float = 0.0,
    ) -> None:
        self.source = source
        self.limit = limit
        self.fractions = SplitFractions(validation=validation_fraction, test=test_fraction)
        super().__init__(name)

    def default_name(self) -> str:
        return "alpaca"

    def settings(self) -> dict:
        return {**super().settings(), "source": self.source, "limit": self.limit, "fractions": vars(self.fractions)}

    def load(self, split: str) -> list[InstructionExample]:
        if split == "test" and self.fractions.test == 0:
            raise TaskDataError(
                f"task {self.name!r} ({self.source}) has no test split: Alpaca.test_fraction is 0"
            )
        rows, label = read_rows(self.source, "train", asked=split)
        examples = [
            InstructionExample(
                id=f"alpaca-{i}",
                instruction=str(field(row, "instruction", label, i)),
                input=optional_text(row, "input"),
                output=str(field(row, "output", label, i)),
            )
            for i, row in enumerate(rows)
        ]
        return self.take_limit(carve(examples, split, self.fractions, salt=self.name), split, self.limit)
