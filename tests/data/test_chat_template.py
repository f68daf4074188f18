"""`template.chat`: the prompt as the user's turn of the tokenizer's chat template.

The chat template here is a small Jinja string set on the tiny tokenizer (an instruct model's
tokenizer ships one); its turn markers are special tokens, as `<|im_start|>` is in SmolLM2's.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
from first_pl_testing import tiny_run_args
from transformers import AutoTokenizer

from first_pl.cli import main
from first_pl.commands.ask import ask
from first_pl.data.batch import IGNORE_INDEX
from first_pl.data.template import PromptTemplate, TemplateError
from first_pl.data.tokenize import TruncationReport, collate, encode
from first_pl.tasks.base import MCExample

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
USER, ASSISTANT = "<|user|>", "<|assistant|>"
CHAT = (
    "{% for m in messages %}" + USER + " {{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %} " + ASSISTANT + "{% endif %}"
)
EXAMPLE = MCExample("q1", "Which of these is a fruit?", ("apple", "tiger"), 0)


@pytest.fixture
def chat_tokenizer(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": [USER, ASSISTANT]})
    tokenizer.chat_template = CHAT
    return tokenizer


def chat_prompt_ids(tokenizer, template: PromptTemplate) -> list[int]:
    """The dense reference: the turn markers' ids around the plain prompt's own tokens."""
    user, assistant = tokenizer.convert_tokens_to_ids([USER, ASSISTANT])
    plain = tokenizer.encode(template.mc_prompt(EXAMPLE), add_special_tokens=False)
    return [user, *plain, assistant]


@pytest.mark.parametrize("answer", ["letter", "text"])
def test_chat_prompt_is_the_user_turn_and_only_the_answer_is_labelled(chat_tokenizer, answer):
    template = PromptTemplate(answer=answer, chat=True)
    item = encode(EXAMPLE, chat_tokenizer, template, 256, TruncationReport())
    prompt = chat_prompt_ids(chat_tokenizer, template)
    response = chat_tokenizer.encode(template.mc_response(EXAMPLE), add_special_tokens=False)
    response += [chat_tokenizer.eos_token_id]
    assert item.input_ids == prompt + response
    # shifted labels: the assistant marker's logits predict the first answer token
    assert item.labels == [IGNORE_INDEX] * (len(prompt) - 1) + response + [IGNORE_INDEX]
    assert item.answer_position == len(prompt) - 1
    assert item.candidate_ids == template.candidate_ids(chat_tokenizer, EXAMPLE)


def test_option_loglik_rows_follow_the_assistant_turn(chat_tokenizer):
    template = PromptTemplate(answer="text", scoring="option_loglik", chat=True)
    item = encode(EXAMPLE, chat_tokenizer, template, 256, TruncationReport())
    batch = collate([item], chat_tokenizer.pad_token_id)
    prompt = chat_prompt_ids(chat_tokenizer, template)
    for row, choice in enumerate(EXAMPLE.choices):
        option = chat_tokenizer.encode(" " + choice, add_special_tokens=False)
        width = len(prompt) + len(option)
        assert batch["option_input_ids"][row, :width].tolist() == prompt + option
        labels = batch["option_labels"][row, :width].tolist()
        assert labels == [IGNORE_INDEX] * (len(prompt) - 1) + option + [IGNORE_INDEX]


def test_chat_without_a_chat_template_is_refused_naming_the_model(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    with pytest.raises(
        TemplateError, match=f"tokenizer of '{tiny_model_dir}' has no chat template"
    ):
        encode(EXAMPLE, tokenizer, PromptTemplate(chat=True), 256, TruncationReport())


def test_chat_false_keeps_the_template_fingerprint():
    """Stores extracted before `chat` existed must still match a template without it."""
    fields = asdict(PromptTemplate())
    del fields["scoring"], fields["chat"], fields["domain_premise"]
    without_chat = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    assert PromptTemplate().fingerprint() == without_chat
    assert PromptTemplate(chat=True).fingerprint() != without_chat


def test_a_chat_trained_checkpoint_is_asked_in_chat(tiny_model_dir, tmp_path, capsys):
    """fit -> checkpoint -> ask with no flags: the recorded template keeps `chat`, and the
    question goes through the chat template (a tokenizer without one would be refused)."""
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    tokenizer = AutoTokenizer.from_pretrained(model)
    # turn markers made of words the tiny model embeds, so it can run on them
    tokenizer.chat_template = (
        "{% for m in messages %}Instruction : {{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %} Response :{% endif %}"
    )
    tokenizer.save_pretrained(model)
    run = tmp_path / "run"
    main(["fit", *tiny_run_args(model, run, "--data.init_args.task_templates.generated.chat", "true",
                                "--data.init_args.task_templates.generated.scoring", "option_loglik",
                                "--trainer.limit_val_batches", "0", "--trainer.max_steps", "1",
                                "--trainer.enable_progress_bar", "false", sizes=(8, None, None), batch_size=4)])  # fmt: skip
    (checkpoint,) = (run / "checkpoints").glob("*.ckpt")
    capsys.readouterr()
    answer = ask(str(checkpoint), "Which of these is a fruit?", ["apple", "tiger"])
    printed = capsys.readouterr().out
    assert (
        "template: answer=text, scoring=option_loglik, chat (recorded in the checkpoint)" in printed
    )
    assert "(exp of the option's option_loglik score)" in printed
    assert answer.token is None
    assert answer.renormalized == pytest.approx(
        answer.confidence / sum(answer.probabilities.values())
    )
