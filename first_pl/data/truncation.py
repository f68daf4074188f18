"""Fitting a long prompt into a token budget by cutting the middle of the example's own text.

A rendered prompt has three parts: the head (what comes before the example's own text: the
task's instruction and the template's words), the body (the example's context and question),
and the tail (the options and the words that ask for the answer). The head says what is asked,
the tail holds the options and the answer position, and a question's facts sit at the start
of its text ("Today, 8/3/1997, is ...") and its ask at the end ("What is the date 10 days
ago?"). So a prompt that does not fit loses tokens from the middle of its body; only a body
cut to nothing lets the head lose tokens (from its left), and only then the tail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase


@dataclass
class Fitted:
    """A prompt's tokens within a budget and what it cost: tokens cut from the body, and from
    the head or tail (`protected`) once the body was gone."""

    ids: list[int]
    dropped: int = 0
    protected: int = 0


def body_span(prompt: str, fields: Sequence[str]) -> tuple[int, int]:
    """Character span of the example's own text in its rendered prompt: from the first of
    `fields` (its context, else its question) to the end of the last one found after it.

    A template that does not show the fields verbatim gives the whole prompt as the body: its
    middle is cut, never its start or its end.
    """
    texts = [text for text in fields if text]
    start = prompt.find(texts[0]) if texts else -1
    if start < 0:
        return 0, len(prompt)
    end = start
    for text in texts:
        found = prompt.find(text, end)
        if found >= 0:
            end = found + len(text)
    return start, end


def fit_prompt(
    tokenizer: PreTrainedTokenizerBase, prompt: str, fields: Sequence[str], budget: int
) -> Fitted:
    """`prompt`'s tokens, or when they exceed `budget` (>= 1) its head, body and tail tokenised
    apart with the middle of the body cut (module docstring)."""
    ids = tokenizer.encode(prompt, add_special_tokens=False)
    if len(ids) <= budget:
        return Fitted(ids)
    start, end = body_span(prompt, fields)
    head, body, tail = (
        tokenizer.encode(part, add_special_tokens=False)
        for part in (prompt[:start], prompt[start:end], prompt[end:])
    )
    excess = len(head) + len(body) + len(tail) - budget
    if excess <= 0:
        return Fitted(head + body + tail)
    keep = max(0, len(body) - excess)
    front = keep // 2  # the odd token goes to the end, where the question asks
    fitted = Fitted([], dropped=len(body) - keep)
    body = body[:front] + body[len(body) - (keep - front) :]
    excess -= fitted.dropped
    if excess > 0:
        from_head = min(excess, len(head))
        head, tail = head[from_head:], tail[excess - from_head :]
        fitted.protected = excess
        fitted.dropped += excess
    fitted.ids = head + body + tail
    return fitted
