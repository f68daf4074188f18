"""Figures 2 and 3: coverage against a dense reference, rank calibration on a planted store."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import LlamaForCausalLM

from first_pl.data.store import StoreMetadata, TeacherStore, TeacherStoreWriter
from first_pl.models import tiny_llama_config
from first_pl.teacher.analysis import (
    coverage,
    rank_calibration,
    write_coverage,
    write_rank_calibration,
)

VOCAB = 300


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_llama_config(VOCAB)).eval()


def batches(n_batches: int = 3, batch: int = 2, length: int = 8, response: int = 3) -> list[dict]:
    """Batches of the data contract: the last ``response`` tokens of each row are the response."""
    gen = torch.Generator().manual_seed(1)
    out = []
    for b in range(n_batches):
        input_ids = torch.randint(1, VOCAB, (batch, length), generator=gen)
        labels = torch.full_like(input_ids, -100)
        labels[:, length - response - 1 : length - 1] = input_ids[:, length - response :]
        out.append(
            {
                "input_ids": input_ids,
                "attention_mask": torch.ones_like(input_ids),
                "labels": labels,
                "example_id": [f"ex-{b}-{i}" for i in range(batch)],
            }
        )
    return out


def test_coverage_matches_dense_softmax(tmp_path: Path) -> None:
    model, data = tiny_llama(), batches()
    result = coverage(model, data, max_k=VOCAB + 50, max_positions=10, probs_dtype="float16")
    with torch.no_grad():
        rows = [
            torch.softmax(model(input_ids=b["input_ids"]).logits[b["labels"] != -100].double(), -1)
            for b in data
        ]
    cum = torch.cat(rows)[:10].sort(dim=-1, descending=True).values.cumsum(-1).numpy()
    assert result.k == list(range(1, VOCAB + 1))  # max_k is capped at the vocab
    assert (result.num_positions, result.total_positions) == (10, 18)
    np.testing.assert_allclose(result.mean, cum.mean(0), rtol=1e-5)
    np.testing.assert_allclose(result.min, cum.min(0), rtol=1e-5)
    np.testing.assert_allclose(result.max, cum.max(0), rtol=1e-5)
    assert result.mean[-1] == pytest.approx(1.0, abs=1e-5)
    assert np.all(np.diff(result.mean) >= 0)
    assert (result.ids_dtype, result.probs_dtype) == ("uint16", "float16")
    assert result.bytes_per_position[:3] == [6, 10, 14]  # k * (2 + 2) + 2 for the gold id
    assert result.total_bytes[4] == 22 * 18

    paths = write_coverage(result, tmp_path / "figs")
    assert {p.name for p in paths.values()} == {"coverage.png", "coverage.csv", "coverage.json"}
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    with paths["csv"].open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == VOCAB and table[0]["k"] == "1"
    assert float(table[4]["mean"]) == pytest.approx(result.mean[4])
    assert json.loads(paths["json"].read_text())["num_positions"] == 10


def planted_store(path: Path) -> TeacherStore:
    """8 positions with probs (0.5, 0.25, 0.125); gold is the rank-1 token 4 times, rank 2
    twice, rank 3 once, and none of them once."""
    meta = StoreMetadata(
        k=3,
        vocab_size=50,
        tokenizer_fingerprint="t",
        teacher="planted",
        task="toy",
        split="validation",
        template_fingerprint="p",
        probs_dtype="float16",
    )
    ids = np.tile([[10, 20, 30]], (8, 1))
    probs = np.tile([[0.5, 0.25, 0.125]], (8, 1))
    gold = np.array([10, 10, 10, 10, 20, 20, 30, 40])
    with TeacherStoreWriter(path, meta) as writer:
        writer.append(["a", "b", "c"], ids, probs, gold, counts=[3, 0, 5])
    return TeacherStore(path)


def test_rank_calibration_on_planted_store(tmp_path: Path) -> None:
    store = planted_store(tmp_path / "t.h5")
    result = rank_calibration(store)
    assert result.rank == [1, 2, 3]
    assert result.mean_prob == [0.5, 0.25, 0.125]
    assert result.accuracy == [0.5, 0.25, 0.125]
    assert result.num_positions == 8
    first_three = rank_calibration(store, max_positions=3)
    assert (first_three.accuracy, first_three.num_positions) == ([1.0, 0.0, 0.0], 3)

    paths = write_rank_calibration(result, tmp_path / "figs")
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    with paths["csv"].open() as f:
        table = list(csv.DictReader(f))
    assert [(r["rank"], r["mean_prob"], r["accuracy"]) for r in table] == [
        ("1", "0.5", "0.5"),
        ("2", "0.25", "0.25"),
        ("3", "0.125", "0.125"),
    ]
    assert json.loads(paths["json"].read_text())["accuracy"] == [0.5, 0.25, 0.125]
