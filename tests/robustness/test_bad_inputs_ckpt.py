"""Bad inputs around what checkpoints record about their data, and around `template.chat`.

Same contract as tests/robustness/test_bad_inputs.py: one clear error naming the option, file or
field, raised by first_pl's own checks (the command line prints it as one line and exits 2).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from robustness_world import World
from test_bad_inputs import Case, ask_args, assert_one_clear_error, fit

from first_pl.cli import main
from first_pl.data.record import DATA_KEY


def rewritten_checkpoint(world: World, tmp: Path, record: dict | None) -> Path:
    """The world's checkpoint with its data record replaced (None: removed)."""
    checkpoint = torch.load(world.checkpoint, map_location="cpu", weights_only=True)
    checkpoint.pop(DATA_KEY)
    if record is not None:
        checkpoint[DATA_KEY] = record
    path = tmp / "rewritten.ckpt"
    torch.save(checkpoint, path)
    return path


def template_from_the_future(world: World, tmp: Path) -> Path:
    record = torch.load(world.checkpoint, map_location="cpu", weights_only=True)[DATA_KEY]
    record["template"]["reasoning"] = "step by step"
    return rewritten_checkpoint(world, tmp, record)


CASES = [
    Case(
        "test-checkpoint-without-data-record-and-no-data",
        lambda w, t: main(["test", "--ckpt_path", str(rewritten_checkpoint(w, t, None))]),
        r"--ckpt_path .*rewritten\.ckpt records no data config .*give the data to test on: "
        r"--config <run folder>/config\.yaml, or --data",
    ),
    Case(
        "ask-checkpoint-recording-unknown-template-fields",
        lambda w, t: main(ask_args(template_from_the_future(w, t))),
        r"--checkpoint .*rewritten\.ckpt records template fields \['reasoning'\] that this "
        r"first_pl does not know; give --template explicitly",
    ),
    Case(
        "fit-chat-template-with-a-tokenizer-without-one",
        lambda w, t: fit(w, t, "--data.init_args.template", '{"chat": true}'),
        r"template\.chat is true but the tokenizer of '.*tiny_llama.*' has no chat template; use "
        r"an instruct model's tokenizer or set template\.chat: false",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_clear_error(case: Case, world: World, tmp_path: Path, capsys) -> None:
    assert_one_clear_error(case, world, tmp_path, capsys)
