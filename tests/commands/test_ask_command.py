"""`first-pl ask` (one question, answer or abstain) and `first-pl predict` with PredictionWriter."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from first_pl_testing import tiny_run_args
from transformers import AutoTokenizer

from first_pl.cli import main
from first_pl.commands.ask import AskError, ask
from first_pl.data.record import DATA_KEY
from first_pl.data.template import PromptTemplate
from first_pl.tasks import GeneratedMC

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# Words of the tiny tokenizer: the checkpoint answers with the option's text (generated.yaml),
# whose first tokens must differ.
CHOICES = ["apple", "tiger"]
QUESTION = ["--question", "Which of these is a fruit?", "--choices", json.dumps(CHOICES)]


def run_args(model_dir: Path, run: Path) -> list[str]:
    return tiny_run_args(model_dir, run, "--data.init_args.eval_batch_size", "5",
                         "--trainer.enable_progress_bar", "false", sizes=(8, None, 12), batch_size=4)  # fmt: skip


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory) -> tuple[Path, Path]:
    """A FineTune checkpoint after 2 CLI steps, and its `first-pl export` folder."""
    run = tmp_path_factory.mktemp("run")
    main(
        ["fit", *run_args(tiny_model_dir, run)]
        + ["--trainer.limit_val_batches", "0", "--trainer.max_steps", "2"]
    )
    (checkpoint,) = (run / "checkpoints").glob("*.ckpt")
    exported = run / "hf"
    main(["export", "--checkpoint", str(checkpoint), "--output_dir", str(exported)])
    return checkpoint, exported


def printed_fields(text: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in text.strip().splitlines())


def test_ask_checkpoint_prints_answer_confidences_and_decision(trained, capsys):
    checkpoint, _ = trained
    main(["ask", "--checkpoint", str(checkpoint), *QUESTION])
    fields = printed_fields(capsys.readouterr().out)
    assert fields["answer"] in ("A. apple", "B. tiger")
    assert {"confidence", "confidence over the candidates", "candidate probabilities"} <= set(
        fields
    )
    assert fields["decision"].split()[0] in ("answer", "abstain")


def test_exported_folder_gives_the_checkpoints_answer(trained, capsys):
    checkpoint, exported = trained
    three = ["apple", "tiger", "airplane"]
    from_ckpt = ask(str(checkpoint), "Which of these is a fruit?", three)
    from_folder = ask(str(exported), "Which of these is a fruit?", three)
    assert from_folder.letter == from_ckpt.letter
    assert from_folder.confidence == pytest.approx(from_ckpt.confidence, abs=1e-6)
    probs = from_ckpt.probabilities
    assert list(probs) == ["A", "B", "C"]
    assert from_ckpt.confidence == pytest.approx(max(probs.values()))
    assert from_ckpt.renormalized == pytest.approx(from_ckpt.confidence / sum(probs.values()))
    assert from_ckpt.confidence < from_ckpt.renormalized <= 1  # the vocabulary takes some mass


def scored_token(tokenizer, text: str) -> str:
    """How `ask` names the token scored for an answer: the first token of " " + text."""
    return repr(tokenizer.decode(tokenizer.encode(" " + text, add_special_tokens=False)[:1]))


def test_ask_answers_the_way_the_checkpoint_was_trained(trained, tiny_model_dir, capsys):
    """generated.yaml trains its task to answer with the option's text: asked without
    --template, the checkpoint and its export answer with the text and name its token."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for source in trained:
        main(["ask", "--checkpoint", str(source), *QUESTION])
        fields = printed_fields(capsys.readouterr().out)
        assert fields["template"] == (
            "answer=text, scoring=first_token (recorded in the checkpoint); "
            "max_length=128 (recorded in the checkpoint)"
        )
        letter, text = fields["answer"].split(". ")
        assert text == CHOICES["AB".index(letter)]
        token = scored_token(tokenizer, text)
        assert token != repr(letter)
        assert fields["confidence"].endswith(f"(full-vocab probability of {token})")


def test_an_explicit_template_and_max_length_win(trained, tiny_model_dir, capsys):
    checkpoint, _ = trained
    given = ["--template", '{"answer": "letter"}', "--max_length", "64"]
    main(["ask", "--checkpoint", str(checkpoint), *QUESTION, *given])
    fields = printed_fields(capsys.readouterr().out)
    assert fields["template"] == "answer=letter, scoring=letter (given); max_length=64 (given)"
    letter = fields["answer"].split(".")[0]
    token = scored_token(AutoTokenizer.from_pretrained(tiny_model_dir), letter)
    assert fields["confidence"].endswith(f"(full-vocab probability of {token})")


def test_checkpoint_records_its_data_as_plain_data(trained):
    """weights_only=True loads nothing but plain data: no Path, Namespace or template object."""
    checkpoint, _ = trained
    record = torch.load(checkpoint, map_location="cpu", weights_only=True)[DATA_KEY]
    template = {**asdict(PromptTemplate()), "answer": "text"}
    assert record["template"] == template
    assert record["task_templates"] == {"generated": template}
    assert record["max_length"] == 128
    config = record["config"]
    assert config["class_path"] == "first_pl.data.qa_datamodule.QADataModule"
    assert config["init_args"]["train_task"]["init_args"]["test_size"] == 12
    task = GeneratedMC(**config["init_args"]["train_task"]["init_args"])
    assert record["train_task"] == {
        "name": "generated",
        "fingerprint": task.fingerprint(),
        "template_fingerprint": PromptTemplate(answer="text").fingerprint(),
    }


def test_threshold_decides_answer_or_abstain(trained, capsys):
    checkpoint, _ = trained
    args = ["ask", "--checkpoint", str(checkpoint), *QUESTION]
    main([*args, "--threshold", "0"])
    assert printed_fields(capsys.readouterr().out)["decision"].startswith("answer")
    main([*args, "--threshold", "1"])
    assert printed_fields(capsys.readouterr().out)["decision"].startswith("abstain")
    # Over 2 candidates the chosen one always holds at least half of their mass.
    main([*args, "--threshold", "0.5", "--abstain_on", "renormalized"])
    assert printed_fields(capsys.readouterr().out)["decision"].startswith("answer")


def test_bad_choices_and_threshold_are_named(trained):
    checkpoint, _ = trained
    with pytest.raises(AskError, match="at least 2 options"):
        main(["ask", "--checkpoint", str(checkpoint), "--question", "q", "--choices", '["Oslo"]'])
    six = '["a", "b", "c", "d", "e", "f"]'
    with pytest.raises(AskError, match="6 options but the template has only 5 letters"):
        main(["ask", "--checkpoint", str(checkpoint), "--question", "q", "--choices", six])
    with pytest.raises(AskError, match="threshold"):
        ask(str(checkpoint), "q", ["a", "b"], threshold=1.5)


def test_a_tokenizer_saved_alone_is_a_tokenizer(trained, tiny_model_dir, tmp_path):
    """A folder with tokenizer files and no config.json was refused as 'has no config.json'."""
    checkpoint, _ = trained
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "tokenizer")
    assert not (tmp_path / "tokenizer" / "config.json").exists()
    alone = ask(str(checkpoint), "Which city?", CHOICES, tokenizer=str(tmp_path / "tokenizer"))
    default = ask(str(checkpoint), "Which city?", CHOICES)
    assert alone == default


def test_predict_writes_answers_with_confidence(trained, tiny_model_dir, tmp_path):
    checkpoint, _ = trained
    run = tmp_path / "predict"
    main(
        ["predict", *run_args(tiny_model_dir, run), "--ckpt_path", str(checkpoint)]
        + ["--trainer.callbacks+=first_pl.callbacks.prediction_writer.PredictionWriter"]
    )
    with (run / "predictions_generated.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12  # 3 batches of 5, 5, 2 streamed into one file
    assert len({r["example_id"] for r in rows}) == 12
    for row in rows:
        assert row["letter"] in "ABCDE" and row["gold"] in "ABCDE"
        assert 0 < float(row["confidence"]) <= 1
        assert row["correct"] == str(int(row["letter"] == row["gold"]))
