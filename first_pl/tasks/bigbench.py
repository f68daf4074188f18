"""BIG-bench multiple-choice `task.json` files (a file or a task folder).

Choices are not lettered in the file; they are lettered by the template in file order. BIG-bench
has no splits, so train / validation / test are carved by a hash of each example's id
(`<task>-<index>`), stable under reordering of the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from first_pl.tasks.base import MCExample, SplitFractions, Task, TaskDataError, carve, check_mc


class BigBench(Task):
    """One BIG-bench JSON task with `target_scores` (exactly one choice scoring 1)."""

    def __init__(
        self,
        path: str,
        name: str | None = None,
        limit: int | None = None,
        validation_fraction: float = 0.1,
        test_fraction: float = 0.5,
        max_options: int = 5,
    ) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self.path = self.path / "task.json"
        self.limit = limit
        self.max_options = max_options
        self.fractions = SplitFractions(validation=validation_fraction, test=test_fraction)
        super().__init__(name)

    def default_name(self) -> str:
        return self.path.parent.name if self.path.name == "task.json" else self.path.stem

    def settings(self) -> dict:
        return {
            **super().settings(),
            "path": str(self.path),
            "limit": self.limit,
            "fractions": vars(self.fractions),
            "max_options": self.max_options,
        }

    def read_all(self) -> list[MCExample]:
        if not self.path.is_file():
            raise TaskDataError(f"BIG-bench task file {self.path} does not exist")
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise TaskDataError(f"{self.path}: not valid UTF-8 text") from err
        except json.JSONDecodeError as err:
            raise TaskDataError(f"{self.path}: malformed JSON at line {err.lineno}: {err.msg}") from err
        rows = data.get("examples") if isinstance(data, dict) else None
        if not rows:
            raise TaskDataError(f"{self.path}: expected a non-empty 'examples' list")
        examples = []
        for i, row in enumerate(rows):
            scores = row.get("target_scores")
            if not isinstance(scores, dict) or "input" not in row:
                raise TaskDataError(f"{self.path}: example {i} needs 'input' and a 'target_scores' object")
            winners = [j for j, score in enumerate(scores.values()) if score == 1]
            if len(winners) != 1:
                raise TaskDataError(
                    f"{self.path}: example {i} field 'target_scores' has {len(winners)} choices scoring 1; expected exactly 1"
                )
            example = MCExample(
                id=f"{self.name}-{i}", question=str(row["input"]), choices=tuple(scores), answer=winners[0]
            )
            if len(example.choices) <= self.max_options:
                examples.append(check_mc(example, str(self.path), self.max_options))
        return examples

    def load(self, split: str) -> list[MCExample]:
        examples = carve(self.read_all(), split, self.fractions, salt=self.name)
        return examples[: self.limit] if self.limit else examples
