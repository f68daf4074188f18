"""What a task's figures stand on, end to end: prompts cut to fit `data.eval_max_length` are
counted in `metrics_test.json`, per example in the predictions and flagged in the report;
predictions that follow the longest option are warned about and recorded."""

from __future__ import annotations

import csv
import json

import lightning.pytorch as pl
import pytest

from first_pl.callbacks import CalibrationEvaluation
from first_pl.data.qa_datamodule import QADataModule
from first_pl.data.template import PromptTemplate
from first_pl.methods.scoring import choice_output
from first_pl.report import build_report
from first_pl.tasks import BigBench


class Longest(pl.LightningModule):
    """Picks the option of the most tokens, whatever the question: a length-biased scoring."""

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        mask = batch["choice_tokens"] > 0
        return choice_output(batch["choice_tokens"].float().log_softmax(1), mask, batch, batch["scoring"])


def write_task(tmp_path, n: int = 120) -> BigBench:
    """Every third question is long; the options "dog" (1 token) and "red apple" (2)."""
    examples = [
        {"input": ("Japan " + "apple " * 30 if i % 3 == 0 else "") + f"Is {i} the largest ?",
         "target_scores": {"dog": int(i % 2 == 0), "red apple": int(i % 2 == 1)}}
        for i in range(n)
    ]  # fmt: skip
    folder = tmp_path / "data" / "pets"
    folder.mkdir(parents=True)
    (folder / "task.json").write_text(json.dumps({"examples": examples}))
    return BigBench(str(folder))


def test_truncation_and_length_bias_reach_metrics_predictions_and_report(tmp_path, tiny_model_dir):
    task = write_task(tmp_path)
    template = PromptTemplate(answer="text", scoring="option_loglik_norm_bytes")
    dm = QADataModule(tokenizer=str(tiny_model_dir), eval_tasks=[task], template=template, eval_max_length=24)
    run = tmp_path / "run"
    trainer = pl.Trainer(default_root_dir=run, logger=False, enable_progress_bar=False,
                         callbacks=[CalibrationEvaluation(n_resamples=20)])  # fmt: skip
    with pytest.warns(UserWarning, match=r"test/pets: the predictions follow the longest option in tokens in 100% of"):
        trainer.test(Longest(), datamodule=dm)
    items = dm.examples(task, "test", 24)
    cut = {item.example_id: item.truncated_tokens for item in items}
    assert 0 < sum(c > 0 for c in cut.values()) < len(items)
    entry = json.loads((run / "metrics_test.json").read_text())["tasks"]["pets"]
    assert entry["scoring"] == "option_loglik_norm_bytes"
    assert entry["truncated_examples"] == sum(c > 0 for c in cut.values())
    assert entry["truncated_tokens"] == sum(cut.values())
    kinds = {bias["kind"]: bias for bias in entry["prediction_bias"]}
    assert {"longest_tokens", "longest_bytes", "text"} <= set(kinds)
    assert kinds["text"]["value"] == "red apple" and kinds["text"]["share"] == 1.0
    gold = sum(item.choices[item.gold] == "red apple" for item in items) / len(items)
    assert kinds["longest_tokens"]["gold_share"] == pytest.approx(gold)
    with (run / "predictions" / "test_pets.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["example_id"]: int(row["truncated_tokens"]) for row in rows} == cut

    text = build_report([str(run)], str(tmp_path / "report"), n_resamples=20).path.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| run | - | pets |"))
    share = 100 * entry["truncated_examples"] / entry["n"]
    assert f"| option_loglik_norm_bytes | {entry['n']} | {entry['truncated_examples']} ({share:.1f}%) |" in row
    assert f"TRUNCATED: {share:.1f}% of the examples" in row
    assert "predictions follow the longest option in tokens in 100%" in row
    assert "Warning: pets (run) was scored on" in text


def test_a_task_cut_in_5_percent_or_fewer_is_not_flagged(tmp_path, tiny_model_dir):
    task = write_task(tmp_path)
    dm = QADataModule(tokenizer=str(tiny_model_dir), eval_tasks=[task], eval_max_length=None,
                      template=PromptTemplate(answer="text", scoring="option_pmi"))  # fmt: skip
    run = tmp_path / "run"
    trainer = pl.Trainer(default_root_dir=run, logger=False, enable_progress_bar=False,
                         callbacks=[CalibrationEvaluation(n_resamples=20)])  # fmt: skip
    trainer.test(Longest(), datamodule=dm)
    entry = json.loads((run / "metrics_test.json").read_text())["tasks"]["pets"]
    assert (entry["truncated_examples"], entry["truncated_tokens"], entry["scoring"]) == (0, 0, "option_pmi")
    text = build_report([str(run)], str(tmp_path / "report"), n_resamples=20).path.read_text()
    assert "| run | - | pets | option_pmi |" in text and "TRUNCATED" not in text


def test_outputs_without_example_facts_still_report_position_only():
    rows = [("x", 0, 0, 0.9, 0.9, True, -0.1, 0, (), [])] * 25
    checks = CalibrationEvaluation().checks("test", "t", rows, letters="AB")
    assert checks["truncated_examples"] == 0 and [b["kind"] for b in checks["prediction_bias"]] == ["position"]
    assert checks["prediction_bias"][0]["description"] == "option A in 100% of 25 examples (gold answer: 100%)"
