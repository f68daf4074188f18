"""Alpaca-style instruction data (`tatsu-lab/alpaca` or a local file in its schema).

The hub dataset has only a train split; validation and test are carved by a hash of each id.
Rows carry no id, so the id is the row number in the source.
"""

from __future__ import annotations

from first_pl.tasks.base import InstructionExample, SplitFractions, Task, carve
from first_pl.tasks.records import field, read_rows


class Alpaca(Task):
    """Instruction / input / output rows, used to train students out of domain."""

    def __init__(
        self,
        source: str = "tatsu-lab/alpaca",
        name: str | None = None,
        limit: int | None = None,
        validation_fraction: float = 0.05,
    ) -> None:
        self.source = source
        self.limit = limit
        self.fractions = SplitFractions(validation=validation_fraction, test=0.0)
        super().__init__(name)

    def default_name(self) -> str:
        return "alpaca"

    def settings(self) -> dict:
        return {**super().settings(), "source": self.source, "limit": self.limit, "fractions": vars(self.fractions)}

    def load(self, split: str) -> list[InstructionExample]:
        rows, label = read_rows(self.source, "train")
        examples = [
            InstructionExample(
                id=f"alpaca-{i}",
                instruction=str(field(row, "instruction", label, i)),
                input=str(row.get("input") or ""),
                output=str(field(row, "output", label, i)),
            )
            for i, row in enumerate(rows)
        ]
        examples = carve(examples, split, self.fractions, salt=self.name)
        return examples[: self.limit] if self.limit else examples
