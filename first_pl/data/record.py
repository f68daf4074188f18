"""What a checkpoint records about its data: how the model was taught to answer.

A model trained to answer with the option's text, scored by its first token, must be asked the
same way: asked for a letter it answers at chance. The methods write `data_record` into every
checkpoint they save (`MethodModule.on_save_checkpoint`), `export` copies it into its folder,
and `ask`, `test`, `predict` and `export` read it back (`recorded_template`,
`recorded_max_length`, `exported_record`) as their defaults.

The record is plain data (dicts, lists, strings, numbers), so a checkpoint stays loadable with
`torch.load(weights_only=True)`:

- `template`: the training task's template fields (`PromptTemplate`), the one the model answers;
- `task_templates`: the template of each evaluation task, by task name;
- `max_length`: prompt + response tokens the model was trained on;
- `tokenizer`: the data tokenizer's name or folder, as configured;
- `train_task`: the training task's name and fingerprint, with the template fingerprint: which
  data the weights were trained on;
- `config`: the `data` config (`class_path` / `init_args`) the module was built from when
  the CLI built it, else None: what `first-pl test --ckpt_path` rebuilds the data from.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from first_pl.data.template import PromptTemplate, TemplateError
from first_pl.fileio.run_files import EXPORT_MARKER

if TYPE_CHECKING:
    from first_pl.data.qa_datamodule import QADataModule

DATA_KEY = "first_pl_data"  # the checkpoint entry holding the record


def data_record(datamodule: QADataModule) -> dict[str, Any]:
    """The record of the module docstring for `datamodule`."""
    train = datamodule.train_task
    template = datamodule.template_for(train) if train is not None else datamodule.template
    return {
        "template": asdict(template),
        "task_templates": {
            task.name: asdict(datamodule.template_for(task)) for task in datamodule.evaluation_tasks
        },
        "max_length": int(datamodule.max_length),
        "tokenizer": str(datamodule.tokenizer_name),
        "train_task": None
        if train is None
        else {
            "name": train.name,
            "fingerprint": train.fingerprint(),
            "template_fingerprint": template.fingerprint(),
        },
        "config": datamodule.config,
    }


def recorded_template(record: dict[str, Any] | None, where: str) -> PromptTemplate | None:
    """The template a record says the model answers with; None when there is no record.

    A field this version of `PromptTemplate` does not know is refused by name (the record
    comes from a newer first_pl, whose prompts would otherwise be rebuilt differently).
    """
    if not record or not record.get("template"):
        return None
    given = dict(record["template"])
    unknown = sorted(set(given) - {f.name for f in fields(PromptTemplate)})
    if unknown:
        raise TemplateError(
            f"{where} records template fields {unknown} that this first_pl does not know; "
            "give --template explicitly or use the first_pl version that trained it"
        )
    return PromptTemplate(**given)


def recorded_max_length(record: dict[str, Any] | None) -> int | None:
    """The training `max_length` a record holds; None when there is no record."""
    return int(record["max_length"]) if record and record.get("max_length") else None


def exported_record(source: str | Path) -> dict[str, Any] | None:
    """The record a `first-pl export` folder carries in its `EXPORT_MARKER`; None for any other
    source, or for an export of a model that records none."""
    marker = Path(source) / EXPORT_MARKER
    if not marker.is_file():
        return None
    return json.loads(marker.read_text()).get("data")
