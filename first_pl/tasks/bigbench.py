"""BIG-bench multiple-choice `task.json` files (a file or a task folder).

The file's `task_prefix` is the task's instruction ("Identify the physics formula that would be
most useful ..."); many questions are not asked without it, so every example carries it and
the template puts it first (`instruction` replaces it, `""` leaves it out).

Choices are not lettered in the file, and files often list the correct one first (all 229
examples of `physics`), so by default the gold answers are spread evenly over the positions of
each split (`first_pl.tasks.option_order`); `option_order="source"` keeps the file's order.

An example's identity is its content, a hash of its input and its options in any order: the id
is `<task>-<first 12 hex digits>`, and train / validation / test are carved by that hash, so
inserting, deleting or reordering examples in the file moves no other example between splits.
An example repeated in the file keeps its questions in one split (the copies share the hash)
and gets distinct ids: the second copy in file order is `<task>-<hash>-2`, the third `-3`.

Every example is kept unless `max_options` is set: then examples with more options are left
out, and how many is logged and kept in `dropped`. An example with more options than the
template has letters is refused by the data module, which names the task and the option.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from first_pl.tasks.base import (
    MCExample,
    SplitFractions,
    Task,
    TaskDataError,
    carve,
    check_mc,
    content_key,
)
from first_pl.tasks.option_order import check_option_order, ordered

log = logging.getLogger(__name__)


class BigBench(Task):
    """One BIG-bench JSON task with `target_scores` (exactly one choice scoring 1)."""

    def __init__(
        self,
        path: str,
        name: str | None = None,
        limit: int | None = None,
        validation_fraction: float = 0.1,
        test_fraction: float = 0.5,
        max_options: int | None = None,
        option_order: str = "balanced",
        instruction: str | None = None,
    ) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self.path = self.path / "task.json"
        self.limit = limit
        if max_options is not None and max_options < 2:
            raise ValueError(f"BigBench.max_options must be >= 2 or null (keep all), got {max_options}")
        self.max_options = max_options
        check_option_order(option_order, "BigBench")
        self.option_order = option_order
        self.instruction = instruction
        self.fractions = SplitFractions(validation=validation_fraction, test=test_fraction)
        self.dropped = 0
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
            "option_order": self.option_order,
            "instruction": self.instruction,
            "identity": "content",
        }

    def read_all(self) -> list[MCExample]:
        if not self.path.is_file():
            raise TaskDataError(f"BIG-bench task file {self.path} does not exist")
        try:
            data = json.loads(self.path.read_text(encoding="utf-8-sig"))
        except UnicodeDecodeError as err:
            raise TaskDataError(f"{self.path}: not valid UTF-8 text") from err
        except json.JSONDecodeError as err:
            raise TaskDataError(f"{self.path}: malformed JSON at line {err.lineno}: {err.msg}") from err
        rows = data.get("examples") if isinstance(data, dict) else None
        if not rows or not isinstance(rows, list):
            raise TaskDataError(f"{self.path}: expected a non-empty 'examples' list")
        instruction = self.instruction
        if instruction is None:
            instruction = data.get("task_prefix", "")
            if not isinstance(instruction, str):
                raise TaskDataError(f"{self.path}: field 'task_prefix' must be text, got {instruction!r}")
        examples = []
        copies: dict[str, int] = {}
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise TaskDataError(
                    f"{self.path}: example {i} is a {type(row).__name__}; expected an object with "
                    "'input' and 'target_scores'"
                )
            scores = row.get("target_scores")
            if not isinstance(scores, dict) or "input" not in row:
                raise TaskDataError(f"{self.path}: example {i} needs 'input' and a 'target_scores' object")
            winners = [j for j, score in enumerate(scores.values()) if score == 1]
            if len(winners) != 1:
                raise TaskDataError(
                    f"{self.path}: example {i} field 'target_scores' has {len(winners)} choices scoring 1; expected exactly 1"
                )
            question, choices = str(row["input"]), tuple(scores)
            digest = content_key(question, choices)[:12]
            copies[digest] = copies.get(digest, 0) + 1
            suffix = f"-{copies[digest]}" if copies[digest] > 1 else ""
            examples.append(
                MCExample(
                    id=f"{self.name}-{digest}{suffix}",
                    question=question,
                    choices=choices,
                    answer=winners[0],
                    instruction=instruction.strip(),
                )
            )
        if self.max_options is not None:
            kept = [ex for ex in examples if len(ex.choices) <= self.max_options]
            self.dropped = len(examples) - len(kept)
            if self.dropped:
                log.warning(
                    f"{self.path}: left out {self.dropped} of {len(examples)} examples with more than "
                    f"BigBench.max_options={self.max_options} options"
                )
            examples = kept
        return [check_mc(ex, str(self.path), self.max_options) for ex in examples]

    def load(self, split: str) -> list[MCExample]:
        def key(ex: MCExample) -> str:
            return content_key(ex.question, ex.choices)

        examples = carve(self.read_all(), split, self.fractions, salt=self.name, key=key)
        return ordered(self.take_limit(examples, split, self.limit), self.option_order, salt=self.name)
