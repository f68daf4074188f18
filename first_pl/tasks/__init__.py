"""Task families: each turns a source (hub id, local file, generator) into examples with ids."""

from first_pl.tasks.alpaca import Alpaca
from first_pl.tasks.base import InstructionExample, MCExample, Task, TaskDataError
from first_pl.tasks.bigbench import BigBench
from first_pl.tasks.generated import GeneratedInstructions, GeneratedMC
from first_pl.tasks.hub_tasks import BoolQ, CommonsenseQA, OpenBookQA

__all__ = [
    "Alpaca",
    "BigBench",
    "BoolQ",
    "CommonsenseQA",
    "GeneratedInstructions",
    "GeneratedMC",
    "InstructionExample",
    "MCExample",
    "OpenBookQA",
    "Task",
    "TaskDataError",
]
