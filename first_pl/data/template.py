"""Zero-shot prompt templates and the candidate answer tokens they imply."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from transformers import PreTrainedTokenizerBase

from first_pl.tasks.base import InstructionExample, MCExample


class TemplateError(ValueError):
    """A template that cannot be used with a tokenizer (for example a letter of two tokens)."""


@dataclass
class PromptTemplate:
    """How a question becomes a prompt and its answer a response.

    The response is `answer_prefix + letter` followed by the tokenizer's EOS; the answer token
    (prefix + letter) must be a single token so its probability is the model's confidence.
    """

    question: str = "{context}Question: {question}\n{options}\nAnswer:"
    option: str = "{letter}. {text}"
    context: str = "{context}\n"
    letters: str = "ABCDE"
    answer_prefix: str = " "
    instruction: str = "Instruction: {instruction}\n{input}Response:"
    instruction_input: str = "Input: {input}\n"
    response_prefix: str = " "

    def mc_prompt(self, example: MCExample) -> str:
        if len(example.choices) > len(self.letters):
            raise TemplateError(
                f"example {example.id!r} has {len(example.choices)} choices but template.letters has only {len(self.letters)}"
            )
        options = "\n".join(
            self.option.format(letter=letter, text=text) for letter, text in zip(self.letters, example.choices, strict=False)
        )
        context = self.context.format(context=example.context) if example.context else ""
        return self.question.format(context=context, question=example.question.strip(), options=options)

    def mc_response(self, example: MCExample) -> str:
        return self.answer_prefix + self.letters[example.answer]

    def instruction_prompt(self, example: InstructionExample) -> str:
        extra = self.instruction_input.format(input=example.input) if example.input else ""
        return self.instruction.format(instruction=example.instruction, input=extra)

    def instruction_response(self, example: InstructionExample) -> str:
        return self.response_prefix + example.output

    def fingerprint(self) -> str:
        """Identity of the template, stored with teacher distributions extracted under it."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def candidate_token_ids(tokenizer: PreTrainedTokenizerBase, template: PromptTemplate) -> list[int]:
    """Token id of each answer letter (with its prefix); each must be exactly one token."""
    ids = []
    for letter in template.letters:
        pieces = tokenizer.encode(template.answer_prefix + letter, add_special_tokens=False)
        if len(pieces) != 1:
            raise TemplateError(
                f"candidate {template.answer_prefix + letter!r} (template.letters / template.answer_prefix) "
                f"is {len(pieces)} tokens {pieces} for this tokenizer; each answer must be a single token"
            )
        ids.append(pieces[0])
    if len(set(ids)) != len(ids):
        raise TemplateError(f"template.letters {template.letters!r} map to repeated token ids {ids}")
    return ids
