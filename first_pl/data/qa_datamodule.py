"""`QADataModule`: tokenised training batches and candidate-restricted evaluation batches.

One training task; any number of evaluation tasks, each its own dataloader (in-domain and
out-of-domain evaluated in one `validate` / `test` run, logged under the task's name). Task
names are therefore keys: two evaluation tasks under one name are refused, since one would be
scored with the other's examples and logged over it.

Every multiple-choice split is reported when first encoded: how many examples, how many lost
tokens to `max_length` (training) or `eval_max_length` (evaluation), and at which letter the
gold answer sits (warned about when one letter holds more than its share plus noise, which lets
an "always A" model score above chance).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from first_pl.data.batch import EvalBatch, TrainBatch
from first_pl.data.bucketing import LengthGroupedSampler
from first_pl.data.template import PromptTemplate, letter_token_ids
from first_pl.data.tokenize import Encoded, TruncationReport, collate, encode
from first_pl.models import SMOLLM2_ALIAS, load_tokenizer
from first_pl.tasks.base import MCExample, Task, TaskDataError, examples_fingerprint
from first_pl.tasks.option_order import AnswerPositions, position_label

log = logging.getLogger(__name__)

NO_LIMIT = 2**62  # `eval_max_length: null`: a length no prompt reaches


class QADataModule(L.LightningDataModule):
    """Serves a training task and evaluation tasks in the batch contract of docs/ARCHITECTURE.md.

    Args:
        tokenizer: name or folder of the tokenizer (the model's, so candidate ids agree).
        train_task: what `fit` trains on (multiple choice or instruction data).
        eval_tasks: multiple-choice tasks evaluated in validate / test / predict; defaults to
            the training task when it is multiple choice.
        template: prompt template; its fingerprint is stored with teacher distributions.
        task_templates: templates for particular tasks, by task name, overriding `template`
            (the offline default answers its generated task with option text and the
            out-of-domain BIG-bench tasks, whose options often share a first token, with letters).
        max_length: prompt + response tokens of training (and of teacher extraction, which reads
            what training reads); a longer prompt loses tokens from the middle of its context
            and question, keeping the instruction and the options (counted, reported).
        eval_max_length: the same for the evaluation splits (validation, test, predict), whose
            option rows hold a whole question; None never cuts one. Apart from `max_length`
            so that evaluating a long out-of-domain task does not make training pay for it.
        bucket_by_length: training batches of examples of similar length, grouped within
            shuffled windows of `bucket_window` batches (less padding; first_pl/data/bucketing.py);
            one process only.
    """

    def __init__(
        self,
        tokenizer: str = SMOLLM2_ALIAS,
        train_task: Task | None = None,
        eval_tasks: list[Task] | None = None,
        template: PromptTemplate | None = None,
        task_templates: dict[str, PromptTemplate] | None = None,
        batch_size: int = 16,
        eval_batch_size: int = 32,
        max_length: int = 256,
        eval_max_length: int | None = 2048,
        num_workers: int = 0,
        shuffle: bool = True,
        bucket_by_length: bool = False,
        bucket_window: int = 50,
    ) -> None:
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError(f"data.batch_size and data.eval_batch_size must be >= 1, got {batch_size}, {eval_batch_size}")
        if max_length < 8:
            raise ValueError(f"data.max_length must be >= 8, got {max_length}")
        if eval_max_length is not None and eval_max_length < 8:
            raise ValueError(f"data.eval_max_length must be >= 8 or null (never cut), got {eval_max_length}")
        self.tokenizer_name = tokenizer
        self.train_task = train_task
        self.eval_tasks = list(eval_tasks) if eval_tasks else []
        self.template = template or PromptTemplate()
        self.task_templates = dict(task_templates or {})
        check_unique_names(self.eval_tasks)
        known = {task.name for task in [*self.eval_tasks, train_task] if task is not None}
        unknown = sorted(set(self.task_templates) - known)
        if unknown:
            raise ValueError(
                f"data.task_templates names {unknown}, which are not tasks of this data module; "
                f"its tasks are {sorted(known)}"
            )
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.max_length = max_length
        self.eval_max_length = eval_max_length
        self.num_workers = num_workers
        self.shuffle = shuffle
        if bucket_window < 1:
            raise ValueError(f"data.bucket_window must be >= 1, got {bucket_window}")
        self.bucket_by_length, self.bucket_window = bucket_by_length, bucket_window
        # The `data` config this module was built from, as plain data (set by the CLI, which
        # alone knows it); checkpoints record it (`first_pl.data.record`).
        self.config: dict | None = None
        # keyed by the task's settings and the length: a training task may share its name with an
        # evaluation task, and a split may be read for training and for evaluation
        self.encoded: dict[tuple[str, str, int | None], list[Encoded]] = {}
        self.truncation: dict[tuple[str, str], TruncationReport] = {}
        self.answer_positions: dict[tuple[str, str], AnswerPositions] = {}
        # what each split held (`examples_fingerprint`), recorded with its metrics
        self.fingerprints: dict[tuple[str, str], str] = {}

    @functools.cached_property
    def tokenizer(self):
        return load_tokenizer(self.tokenizer_name)

    def template_for(self, task: Task) -> PromptTemplate:
        return self.task_templates.get(task.name, self.template)

    @property
    def evaluation_tasks(self) -> list[Task]:
        if self.eval_tasks:
            return self.eval_tasks
        return [self.train_task] if self.train_task is not None else []

    @property
    def eval_task_names(self) -> list[str]:
        return [task.name for task in self.evaluation_tasks]

    @property
    def candidate_letters(self) -> dict[str, str]:
        """Option letters per evaluation task (labels for predictions and diagrams)."""
        return {task.name: self.template_for(task).letters for task in self.evaluation_tasks}

    def examples(self, task: Task, split: str, max_length: int | None = None) -> list[Encoded]:
        """Tokenised examples of one task split within `max_length` (default: the training
        `max_length`), computed once and reported (see the module doc)."""
        max_length = self.max_length if max_length is None else max_length
        key = (task.name, split)
        cache_key = (task.fingerprint(), split, max_length)
        if cache_key not in self.encoded:
            report = TruncationReport()
            examples = task.load(split)
            if split == "train" and not examples:
                raise TaskDataError(f"task {task.name!r} has no examples in its train split: {task!r}")
            if split != "train" and not all(isinstance(ex, MCExample) for ex in examples):
                raise ValueError(
                    f"evaluation task {task.name!r} is not multiple choice; use it as data.train_task only"
                )
            template = self.template_for(task)
            check_letters(task, split, examples, template.letters)
            self.encoded[cache_key] = [encode(ex, self.tokenizer, template, max_length, report) for ex in examples]
            if report.truncated:
                log.warning(report.summary(f"{task.name}/{split}"))
            self.truncation[key] = report
            self.fingerprints[key] = examples_fingerprint(examples)
            if examples and isinstance(examples[0], MCExample):
                self.report_answer_positions(key, examples, template.letters)
        return self.encoded[cache_key]

    def split_examples(self, split: str) -> list[Encoded]:
        """The tokenised examples of `train_task`'s `split`, in their fixed order: what a teacher
        store of that split holds (`first-pl extract`, `coverage`, `import-store`)."""
        if self.train_task is None:
            raise ValueError("data.train_task is required: it names the task whose split is extracted")
        return self.examples(self.train_task, split)

    def split_loader(self, split: str, batch_size: int) -> DataLoader:
        """Unshuffled training-format batches (labels on the response tokens) of `split_examples`."""
        return DataLoader(
            self.split_examples(split), batch_size=batch_size, shuffle=False, collate_fn=self.collate_train
        )

    def report_answer_positions(self, key: tuple[str, str], examples: list[MCExample], letters: str) -> None:
        positions = AnswerPositions.of(examples)
        self.answer_positions[key] = positions
        what = f"{key[0]}/{key[1]}: gold answer position over {positions.total} examples, count (balanced)"
        best, accuracy = positions.constant_answer()
        line = f"{positions.summary(letters)}; always answering {position_label(best, letters)} scores {100 * accuracy:.1f}%"
        rank_zero_info(f"{what}: {line}")
        skewed = positions.skewed(letters)
        if skewed:
            rank_zero_warn(
                f"{what}: {line}; letter(s) {skewed} hold more than their share, so a model "
                "that always gives one letter scores above chance (set the task's option_order: balanced)"
            )

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None) and self.train_task is None:
            raise ValueError("data.train_task is required for fit")
        if stage in ("validate", "test", "predict") and not self.evaluation_tasks:
            raise ValueError(f"data.eval_tasks is empty; {stage} needs at least one multiple-choice task")
        for template in [self.template, *self.task_templates.values()]:
            if template.answer == "letter":  # fail early on letters that are not single tokens
                letter_token_ids(self.tokenizer, template.letters, template.answer_prefix)
            template.chat_prompt(self.tokenizer, "")  # and on chat without a chat template

    def collate_train(self, items: list[Encoded]) -> TrainBatch:
        return collate(items, self.tokenizer.pad_token_id)

    def collate_eval(self, items: list[Encoded]) -> EvalBatch:
        return collate(items, self.tokenizer.pad_token_id)

    def loader(self, items: list[Any], batch_size: int, shuffle: bool, collate_fn) -> DataLoader:
        return DataLoader(
            items,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=collate_fn,
            persistent_workers=self.num_workers > 0,
        )

    def train_loader(self, items: list[Any], lengths: list[int], collate_fn) -> DataLoader:
        """The training DataLoader over `items` (of token `lengths`): shuffled, or
        length-grouped with `bucket_by_length`."""
        if not self.bucket_by_length:
            return self.loader(items, self.batch_size, self.shuffle, collate_fn)
        processes = self.trainer.world_size if self.trainer is not None else 1
        if processes > 1:
            raise ValueError(
                f"data.bucket_by_length groups batches in one process, but the trainer runs "
                f"{processes}; a distributed sampler would replace the grouping, so set "
                "data.bucket_by_length false or train on one device"
            )
        # the base seed from torch's generator, which seed_everything has set: one per run seed
        seed = int(torch.randint(2**31 - 1, (1,)))
        sampler = LengthGroupedSampler(lengths, self.batch_size, self.bucket_window, self.shuffle, seed)
        return DataLoader(
            items,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_fn,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        items = self.train_items()
        return self.train_loader(items, [len(ex.input_ids) for ex in items], self.collate_train)

    def train_items(self) -> list[Any]:
        return self.examples(self.train_task, "train")

    def eval_dataloaders(self, split: str) -> list[DataLoader]:
        """One loader per evaluation task. An empty task is skipped with a warning (by the
        evaluation callback); all of them empty is refused in validate / test / predict, which
        would end with no metrics at all (a fit only loses its validation points)."""
        items = [self.examples(task, split, self.eval_length) for task in self.evaluation_tasks]
        fitting = self.trainer is not None and self.trainer.state.fn == TrainerFn.FITTING
        if not any(items) and not fitting:
            names = ", ".join(repr(name) for name in self.eval_task_names)
            raise TaskDataError(
                f"every evaluation task has no examples in its {split} split ({names}): "
                f"there is nothing to evaluate and no metrics would be written; give "
                f"data.eval_tasks a task with {split} examples"
            )
        return [self.loader(x, self.eval_batch_size, False, self.collate_eval) for x in items]

    @property
    def eval_length(self) -> int:
        """`eval_max_length` as a length: None never cuts a prompt."""
        return self.eval_max_length if self.eval_max_length is not None else NO_LIMIT

    def val_dataloader(self) -> list[DataLoader]:
        return self.eval_dataloaders("validation")

    def test_dataloader(self) -> list[DataLoader]:
        return self.eval_dataloaders("test")

    def predict_dataloader(self) -> list[DataLoader]:
        return self.eval_dataloaders("test")


def check_unique_names(eval_tasks: list[Task]) -> None:
    """Refuse two evaluation tasks with one name: results, predictions and files are keyed by it,
    so one task would be logged over the other."""
    seen: dict[str, Task] = {}
    for task in eval_tasks:
        if task.name in seen:
            raise ValueError(
                f"data.eval_tasks has two tasks named {task.name!r} ({seen[task.name]!r} and {task!r}); "
                "give each its own init_args.name"
            )
        seen[task.name] = task


def check_letters(task: Task, split: str, examples: list, letters: str) -> None:
    """Refuse examples with more options than the template has letters, naming the options to change."""
    most = max((len(ex.choices) for ex in examples if isinstance(ex, MCExample)), default=0)
    if most > len(letters):
        many = sum(isinstance(ex, MCExample) and len(ex.choices) > len(letters) for ex in examples)
        raise TaskDataError(
            f"task {task.name!r} split {split!r}: {many} examples have up to {most} options but the template's "
            f"letters {letters!r} name only {len(letters)}; give data.task_templates.{task.name}.letters "
            f"{most} letters (e.g. {'ABCDEFGHIJKLMNOPQRSTUVWXYZ'[:most]!r}), or set the task's max_options "
            f"to {len(letters)} to leave those examples out"
        )
