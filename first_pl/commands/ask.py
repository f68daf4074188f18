"""`first-pl ask`: one multiple-choice question to a trained model (the paper's case study).

The model answers as `first-pl test` would score the question (`first_pl.methods.answer`): the
confidence is the chosen letter's full-vocab probability (the paper's semantics, used for the
abstention decision by default); the value renormalised over the candidate letters is printed
beside it.

Batch predictions with confidences come from `first-pl predict` with the writer callback:
``first-pl predict --config <run config> --ckpt_path <ckpt>
--trainer.callbacks+=first_pl.callbacks.prediction_writer.PredictionWriter``.
"""

from __future__ import annotations

from typing import Literal

import torch

from first_pl.data.template import PromptTemplate
from first_pl.methods.answer import (
    Answer,
    AskError,
    answer_question,
    check_question,
    check_vocabulary,
)
from first_pl.methods.loading import load_model
from first_pl.models import load_tokenizer

__all__ = ["Answer", "AskError", "ask"]


def answer_lines(answer: Answer, threshold: float, on: str) -> list[str]:
    """What `ask` prints: one `field: value` line each."""
    choices = "  ".join(f"{k}: {v:.4f}" for k, v in answer.probabilities.items())
    relation = ">=" if answer.decision == "answer" else "<"
    truncated = [f"prompt truncated: {answer.tokens_dropped} tokens dropped from the left"]
    return [
        *(truncated if answer.tokens_dropped else []),
        f"answer: {answer.letter}. {answer.text}",
        f"confidence: {answer.confidence:.4f} (full-vocab probability of {answer.letter!r})",
        f"confidence over the candidates: {answer.renormalized:.4f}",
        f"candidate probabilities: {choices}",
        f"decision: {answer.decision} ({on} confidence {relation} threshold {threshold})",
    ]


def ask(
    checkpoint: str,
    question: str,
    choices: list[str],
    threshold: float = 0.5,
    abstain_on: Literal["full", "renormalized"] = "full",
    tokenizer: str | None = None,
    context: str = "",
    template: PromptTemplate | None = None,
    max_length: int = 256,
) -> Answer:
    """Ask a trained model a multiple-choice question; print its answer, confidence and decision.

    Args:
        checkpoint: a first_pl `.ckpt` (any strategy) or sharded checkpoint folder, a folder
            written by `first-pl export` (any Hugging Face causal LM folder, .gguf file or hub
            id works: `first_pl.methods.loading`).
        question: the question text.
        choices: the options, e.g. '["Oslo", "Rome"]'; lettered A, B, ... by the template.
        threshold: answer when the confidence is at least this, else abstain.
        abstain_on: which confidence the threshold applies to: `full` (full-vocab probability,
            the paper's) or `renormalized` (over the candidate letters).
        tokenizer: tokenizer name or folder; default: the model's source (an exported folder
            holds its tokenizer; students share their teacher's).
        context: optional passage shown before the question (as BoolQ's).
        template: the prompt template the model was trained with (default: first_pl's).
        max_length: longer prompts lose tokens from the left, with a warning that says how
            many and the length that would fit.
    """
    if not 0 <= threshold <= 1:
        raise AskError(f"--threshold must be in [0, 1], got {threshold}")
    template = template or PromptTemplate()
    check_question(question, choices, template.letters)  # before loading a model
    module = load_model(checkpoint, "--checkpoint").module
    if torch.cuda.is_available():
        module = module.cuda()
    source = tokenizer or module.model_spec.name_or_path
    loaded = load_tokenizer(source)
    check_vocabulary(loaded, module, source)
    result = answer_question(
        module, loaded, question, choices, template, threshold, abstain_on, context, max_length
    )
    print("\n".join(answer_lines(result, threshold, abstain_on)))
    return result
