"""`first-pl ask`: one multiple-choice question to a trained model (the paper's case study).

The model answers as `first-pl test` would score the question (`first_pl.methods.answer`): the
confidence is the full-vocab probability of the chosen answer token (the paper's semantics,
used for the abstention decision by default); the value renormalised over the candidates is
printed beside it. The prompt template and `max_length` default to the ones the checkpoint (or
the `first-pl export` folder) records, so a model trained to answer with the option's text is
asked for text, not for a letter; `--template` / `--max_length` still win.

Batch predictions with confidences come from `first-pl predict` with the writer callback:
``first-pl predict --ckpt_path <ckpt>
--trainer.callbacks+=first_pl.callbacks.prediction_writer.PredictionWriter``.
"""

from __future__ import annotations

from typing import Literal, TypeVar

import torch

from first_pl.data.record import exported_record, recorded_max_length, recorded_template
from first_pl.data.template import PromptTemplate
from first_pl.methods.answer import Answer, AskError, answer_question, check_question
from first_pl.methods.compatibility import check_vocabulary
from first_pl.methods.loading import load_model
from first_pl.models import load_tokenizer

__all__ = ["Answer", "AskError", "ask"]

DEFAULT_MAX_LENGTH = 256  # for a model that records none
T = TypeVar("T")


def answer_lines(answer: Answer, threshold: float, on: str) -> list[str]:
    """What `ask` prints: one `field: value` line each."""
    choices = "  ".join(f"{k}: {v:.4f}" for k, v in answer.probabilities.items())
    relation = ">=" if answer.decision == "answer" else "<"
    scored = (
        f"full-vocab probability of {answer.token!r}"
        if answer.token is not None
        else f"exp of the option's {answer.scoring} score"
    )
    truncated = [f"prompt truncated: {answer.tokens_dropped} tokens cut from the middle of the question"]
    return [
        *(truncated if answer.tokens_dropped else []),
        f"answer: {answer.letter}. {answer.text}",
        f"confidence: {answer.confidence:.4f} ({scored})",
        f"confidence over the candidates: {answer.renormalized:.4f}",
        f"candidate probabilities: {choices}",
        f"decision: {answer.decision} ({on} confidence {relation} threshold {threshold})",
    ]


def template_line(template: PromptTemplate, max_length: int, sources: tuple[str, str]) -> str:
    """The `template:` line: how the question was put, and where each setting came from."""
    chat = ", chat" if template.chat else ""
    return (
        f"template: answer={template.answer}, scoring={template.resolved_scoring}{chat} "
        f"({sources[0]}); max_length={max_length} ({sources[1]})"
    )


def setting(given: T | None, recorded: T | None, default: T, what: str) -> tuple[T, str]:
    """`(value, where it came from)`: the given value, else the recorded one, else the default."""
    if given is not None:
        return given, "given"
    if recorded is not None:
        return recorded, "recorded in the checkpoint"
    return default, f"first_pl's default: the checkpoint records no {what}"


def ask(
    checkpoint: str,
    question: str,
    choices: list[str],
    threshold: float = 0.5,
    abstain_on: Literal["full", "renormalized"] = "full",
    tokenizer: str | None = None,
    context: str = "",
    template: PromptTemplate | None = None,
    max_length: int | None = None,
    trust_checkpoint: bool = False,
) -> Answer:
    """Ask a trained model a multiple-choice question; print its answer, confidence and decision.

    Args:
        checkpoint: a first_pl `.ckpt` (any method) or sharded checkpoint folder, a folder
            written by `first-pl export` (any Hugging Face causal LM folder, .gguf file or hub
            id works: `first_pl.methods.loading`).
        question: the question text.
        choices: the options, e.g. '["Oslo", "Rome"]'; lettered A, B, ... by the template.
        threshold: answer when the confidence is at least this, else abstain.
        abstain_on: which confidence the threshold applies to: `full` (full-vocab probability,
            the paper's) or `renormalized` (over the candidates).
        tokenizer: tokenizer name or folder; default: the model's source (an exported folder
            holds its tokenizer; students share their teacher's).
        context: optional passage shown before the question (as BoolQ's).
        template: the prompt template; default: the one the checkpoint's training task used
            (recorded in it), else first_pl's.
        max_length: longer prompts lose tokens from the middle of the context and question;
            default: the checkpoint's training max_length, else 256; a cut is said with
            how many tokens and the length that would fit.
        trust_checkpoint: load a checkpoint that needs more than tensors and plain data (its
            pickle can run code): only for a file from a source you trust. Default: refused.
    """
    if not 0 <= threshold <= 1:
        raise AskError(f"--threshold must be in [0, 1], got {threshold}")
    if template is not None:
        check_question(question, choices, template.letters)  # before loading a model
    module = load_model(checkpoint, "--checkpoint", trust=trust_checkpoint).module
    record = module.data_record or exported_record(checkpoint)
    recorded = (
        None if template is not None else recorded_template(record, f"--checkpoint {checkpoint}")
    )
    template, template_source = setting(template, recorded, PromptTemplate(), "template")
    max_length, length_source = setting(
        max_length, recorded_max_length(record), DEFAULT_MAX_LENGTH, "max_length"
    )
    if torch.cuda.is_available():
        module = module.cuda()
    tokenizer_source = tokenizer or module.model_spec.name_or_path
    loaded = load_tokenizer(tokenizer_source)
    check_vocabulary(
        module.model,
        loaded,
        f"tokenizer {tokenizer_source}",
        "the model",
        "give --tokenizer of the model the checkpoint was trained from",
    )
    result = answer_question(
        module, loaded, question, choices, template, threshold, abstain_on, context, max_length
    )
    header = template_line(template, max_length, (template_source, length_source))
    print("\n".join([header, *answer_lines(result, threshold, abstain_on)]))
    return result
