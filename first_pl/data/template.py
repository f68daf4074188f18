"""Zero-shot prompt templates and the candidate answer tokens they imply."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import asdict, dataclass

from transformers import PreTrainedTokenizerBase

from first_pl.tasks.base import InstructionExample, MCExample


class TemplateError(ValueError):
    """A template that cannot be used with a tokenizer (for example a letter of two tokens)."""


@dataclass
class PromptTemplate:
    """How a question becomes a prompt and its answer a response.

    Options are always shown lettered. A multiple-choice example's `instruction` (its task's
    own, e.g. BIG-bench's `task_prefix`) opens the prompt, then a blank line, then `question`.
    `answer` says how the model answers:

    - ``"letter"`` (the paper's CSQA/OBQA format): the response is `answer_prefix + letter`;
      each candidate (prefix + letter) must be a single token.
    - ``"text"``: the response is `answer_prefix + option text`; the candidates are the first
      tokens of the options, which must differ within each question. A small model learns to
      copy the right option within a few dozen steps, while binding an option to its letter
      stayed at chance after 120 (README, "Why the generated task answers with text").

    Either way the response ends with the tokenizer's EOS. `chat: true` puts the rendered
    prompt as the user's message into the tokenizer's chat template (an instruct model's),
    which then opens the assistant's turn; the response follows it as above, so the loss and
    the scores still fall on the answer tokens only. A turn starts without a space: give it
    `answer_prefix: ""` (README, "Chat templates", measures both). `scoring` says how an evaluation
    scores the options (the training response is `answer`'s either way):

    - ``"letter"`` / ``"first_token"``: the full-vocab probability of one token at the answer
      position (the letter; the first token of the option text); `None` picks the one that
      matches `answer`. Confidence: that probability (the paper's).
    - option scorings (`OPTION_SCORINGS`, `first_pl.data.option_batch.option_divisor`): the
      log-likelihood of the continuation `answer_prefix + option text` after the prompt, summed
      (``"option_loglik"``, lm-evaluation-harness's acc), per token
      (``"option_loglik_norm_tokens"``, also accepted as ``"option_loglik_norm"``), per
      character or per UTF-8 byte of the option text (``"option_loglik_norm_chars"`` /
      ``"option_loglik_norm_bytes"``, lm-evaluation-harness's acc_norm / acc_bytes), or less
      the option's log-likelihood after `domain_premise` alone (``"option_pmi"``). Options
      sharing a first token are told apart. Confidence: the softmax over the options' scores.

    `domain_premise` is the task-independent text that `option_pmi` conditions the
    unconditional likelihood on (Holtzman et al. 2021's x_domain); None takes the text of
    `question` after its last field (``"Answer:"`` by default), the words that introduce an
    answer in every prompt.
    """

    question: str = "{context}Question: {question}\n{options}\nAnswer:"
    option: str = "{letter}. {text}"
    context: str = "{context}\n"
    letters: str = "ABCDE"
    answer_prefix: str = " "
    instruction: str = "Instruction: {instruction}\n{input}Response:"
    instruction_input: str = "Input: {input}\n"
    response_prefix: str = " "
    answer: str = "letter"
    scoring: str | None = None
    domain_premise: str | None = None
    chat: bool = False

    def __post_init__(self) -> None:
        if self.answer not in ANSWER_FORMATS:
            raise TemplateError(f"template.answer must be one of {ANSWER_FORMATS}, got {self.answer!r}")
        if self.scoring is not None and self.scoring not in SCORINGS:
            raise TemplateError(f"template.scoring must be one of {SCORINGS} or null, got {self.scoring!r}")
        token_scoring = {"letter": "letter", "text": "first_token"}[self.answer]
        if self.scoring in TOKEN_SCORINGS and self.scoring != token_scoring:
            raise TemplateError(
                f"template.scoring={self.scoring!r} scores a token the model is not trained to answer with "
                f"(template.answer={self.answer!r}); use {token_scoring!r}, or an option log-likelihood {OPTION_SCORINGS}"
            )

    @property
    def resolved_scoring(self) -> str:
        """`scoring` under its canonical name, or the answer token's scoring when it is None."""
        scoring = self.scoring or ("letter" if self.answer == "letter" else "first_token")
        return SCORING_ALIASES.get(scoring, scoring)

    @property
    def domain_premise_text(self) -> str:
        """`domain_premise`, or the text after the last field of `question`, stripped on the left."""
        if self.domain_premise is not None:
            return self.domain_premise
        return re.split(r"\{[^{}]*\}", self.question)[-1].lstrip()

    def mc_prompt(self, example: MCExample) -> str:
        if len(example.choices) > len(self.letters):
            raise TemplateError(
                f"example {example.id!r} has {len(example.choices)} choices but template.letters has only {len(self.letters)}"
            )
        options = "\n".join(
            self.option.format(letter=letter, text=text) for letter, text in zip(self.letters, example.choices, strict=False)
        )
        context = self.context.format(context=example.context) if example.context else ""
        prompt = self.question.format(context=context, question=example.question.strip(), options=options)
        # the task's instruction comes first, as BIG-bench puts its task_prefix, set off by a blank line
        return f"{example.instruction}\n\n{prompt}" if example.instruction else prompt

    def mc_response(self, example: MCExample) -> str:
        if self.answer == "text":
            return self.answer_prefix + example.choices[example.answer]
        return self.answer_prefix + self.letters[example.answer]

    def candidate_ids(self, tokenizer: PreTrainedTokenizerBase, example: MCExample) -> list[int]:
        """The token whose probability scores each option at the answer position (token scorings)."""
        if self.resolved_scoring in OPTION_SCORINGS:
            raise TemplateError(f"template.scoring={self.scoring!r} scores whole options, not candidate tokens")
        if self.answer == "letter":
            return list(letter_token_ids(tokenizer, self.letters, self.answer_prefix)[: len(example.choices)])
        return option_token_ids(tokenizer, example, self.answer_prefix)

    def option_continuations(self, tokenizer: PreTrainedTokenizerBase, example: MCExample) -> list[list[int]]:
        """Tokens of `answer_prefix + option` per option, tokenised apart from the prompt as the
        response is (lm-evaluation-harness's continuation; no EOS)."""
        options = [tokenizer.encode(self.answer_prefix + choice, add_special_tokens=False) for choice in example.choices]
        if not all(options):
            raise TemplateError(f"example {example.id!r} has an empty option {example.choices}")
        return options

    def domain_premise_ids(self, tokenizer: PreTrainedTokenizerBase) -> list[int]:
        """Tokens of `domain_premise_text`: the context of `option_pmi`'s unconditional rows."""
        ids = tokenizer.encode(self.domain_premise_text, add_special_tokens=False)
        if not ids:
            raise TemplateError(
                f"template.scoring='option_pmi' needs a domain premise, but template.domain_premise is "
                f"{self.domain_premise!r} and template.question {self.question!r} has no text after its last "
                "field; set template.domain_premise to the words that introduce an answer (e.g. 'Answer:')"
            )
        return ids

    def chat_prompt(self, tokenizer: PreTrainedTokenizerBase, prompt: str) -> str:
        """`prompt` as the user's turn of the tokenizer's chat template, ending where the
        assistant's answer starts; `prompt` itself when `chat` is false."""
        if not self.chat:
            return prompt
        if not getattr(tokenizer, "chat_template", None):
            name = tokenizer.name_or_path or type(tokenizer).__name__
            raise TemplateError(
                f"template.chat is true but the tokenizer of {name!r} has no chat template; "
                "use an instruct model's tokenizer or set template.chat: false"
            )
        messages = [{"role": "user", "content": prompt}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def instruction_prompt(self, example: InstructionExample) -> str:
        extra = self.instruction_input.format(input=example.input) if example.input else ""
        return self.instruction.format(instruction=example.instruction, input=extra)

    def instruction_response(self, example: InstructionExample) -> str:
        return self.response_prefix + example.output

    def fingerprint(self) -> str:
        """Identity of the template, stored with teacher distributions extracted under it."""
        fields = asdict(self)
        # evaluation only: the prompts and responses do not depend on them
        del fields["scoring"], fields["domain_premise"]
        if not self.chat:  # changes no prompt: the stores extracted under the template still fit
            del fields["chat"]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


ANSWER_FORMATS = ("letter", "text")
TOKEN_SCORINGS = ("letter", "first_token")
OPTION_SCORINGS = (
    "option_loglik",
    "option_loglik_norm_tokens",
    "option_loglik_norm_chars",
    "option_loglik_norm_bytes",
    "option_pmi",
)
# Scorings whose score is no log-probability (its exp can exceed 1): their confidence is the
# softmax over the options, the only probability they define.
RATIO_SCORINGS = ("option_pmi",)
SCORING_ALIASES = {"option_loglik_norm": "option_loglik_norm_tokens"}  # a shorter name, same scoring
SCORINGS = TOKEN_SCORINGS + OPTION_SCORINGS + tuple(SCORING_ALIASES)


@functools.lru_cache(maxsize=64)
def letter_token_ids(tokenizer: PreTrainedTokenizerBase, letters: str, prefix: str) -> tuple[int, ...]:
    """Token id of each answer letter (with its prefix); each must be exactly one token.

    Cached per tokenizer object: every example of a letter-answered task asks for the same ids.
    """
    ids = []
    for letter in letters:
        pieces = tokenizer.encode(prefix + letter, add_special_tokens=False)
        if len(pieces) != 1:
            raise TemplateError(
                f"candidate {prefix + letter!r} (template.letters / template.answer_prefix) "
                f"is {len(pieces)} tokens {pieces} for this tokenizer; each answer must be a single token"
            )
        ids.append(pieces[0])
    if len(set(ids)) != len(ids):
        raise TemplateError(f"template.letters {letters!r} map to repeated token ids {ids}")
    return tuple(ids)


def option_token_ids(tokenizer: PreTrainedTokenizerBase, example: MCExample, prefix: str) -> list[int]:
    """First token of each `prefix + option`; two options starting with one token cannot be told apart."""
    ids = [tokenizer.encode(prefix + choice, add_special_tokens=False)[:1] for choice in example.choices]
    if not all(ids):
        raise TemplateError(f"example {example.id!r} has an empty option {example.choices}")
    first = [piece[0] for piece in ids]
    for index, token in enumerate(first):
        other = first.index(token)
        if other != index:
            raise TemplateError(
                f"example {example.id!r}: options {example.choices[other]!r} and {example.choices[index]!r} "
                f"both start with token {tokenizer.convert_ids_to_tokens(token)!r}, so template.answer='text' "
                "cannot tell them apart; use template.answer='letter' for this task"
            )
    return first
