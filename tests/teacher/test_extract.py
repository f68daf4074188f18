"""Top-k extraction on a tiny random Llama: equals a dense reference, resumes, shards and merges."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from first_pl.data.store import StoreMetadata, TeacherStore, TeacherStoreWriter
from first_pl.models import tiny_llama_config
from first_pl.teacher.extract import (
    extract_shard,
    extract_topk,
    merge_rank_shards,
    rank_range,
    shard_path,
    tokenizer_fingerprint,
)

VOCAB = 300
K = 5
PAD = 0


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_llama_config(VOCAB)).eval()


def make_dataset(n: int = 8, seed: int = 0) -> list[dict]:
    """Prompt + response token lists; the response is the last 1..5 tokens."""
    gen = torch.Generator().manual_seed(seed)
    examples = []
    for i in range(n):
        length = int(torch.randint(4, 12, (1,), generator=gen))
        tokens = torch.randint(1, VOCAB, (length,), generator=gen)
        response = int(torch.randint(1, min(5, length - 1) + 1, (1,), generator=gen))
        examples.append({"example_id": f"ex-{i}", "tokens": tokens, "response": response})
    return examples


def collate(examples: list[dict]) -> dict:
    """Right-padded batch with pre-shifted labels, following docs/ARCHITECTURE.md."""
    width = max(len(e["tokens"]) for e in examples)
    input_ids = torch.full((len(examples), width), PAD)
    attention_mask = torch.zeros_like(input_ids)
    labels = torch.full_like(input_ids, -100)
    for b, e in enumerate(examples):
        n, r = len(e["tokens"]), e["response"]
        input_ids[b, :n] = e["tokens"]
        attention_mask[b, :n] = 1
        labels[b, n - r - 1 : n - 1] = e["tokens"][n - r :]
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
        "example_id": [e["example_id"] for e in examples],
    }


def loader(dataset: list[dict], batch_size: int = 2) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, collate_fn=collate
    )


def meta() -> StoreMetadata:
    return StoreMetadata(
        k=K,
        vocab_size=VOCAB,
        tokenizer_fingerprint="tok",
        teacher="tiny",
        task="toy",
        split="train",
        template_fingerprint="tpl",
        probs_dtype="float32",
    )


def extract(model: LlamaForCausalLM, path: Path, batches) -> Path:
    with TeacherStoreWriter(path, meta()) as writer:
        extract_topk(model, batches, writer, K, progress=False)
    return path


def store_data(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {name: f[name][:] for name in f}


def assert_same_data(a: Path, b: Path) -> None:
    da, db = store_data(a), store_data(b)
    for name in da:
        assert da[name].dtype == db[name].dtype
        np.testing.assert_array_equal(da[name], db[name], err_msg=name)


def test_extraction_equals_dense_reference(model: LlamaForCausalLM, tmp_path: Path) -> None:
    dataset = make_dataset()
    store = TeacherStore(extract(model, tmp_path / "t.h5", loader(dataset)))
    assert store.example_ids == [e["example_id"] for e in dataset]
    for batch in loader(dataset, batch_size=len(dataset)):
        with torch.no_grad():
            logits = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits
        for b, example_id in enumerate(batch["example_id"]):
            mask = batch["labels"][b] != -100
            probs, ids = torch.softmax(logits[b][mask].float(), dim=-1).topk(K, dim=-1)
            got_ids, got_probs, got_gold = store.positions(store.example_index(example_id))
            np.testing.assert_array_equal(got_ids, ids.numpy())
            np.testing.assert_allclose(got_probs, probs.numpy(), rtol=1e-5, atol=1e-7)
            np.testing.assert_array_equal(got_gold, batch["labels"][b][mask].numpy())
            assert len(got_gold) == dataset[b]["response"]
    assert np.all(np.diff(store.load_all().iter_blocks().__next__()[1], axis=1) <= 0)


def interrupted(batches, after: int):
    """A dataloader that dies after ``after`` batches, like a killed job."""
    for i, batch in enumerate(batches):
        if i == after:
            raise KeyboardInterrupt
        yield batch


def count_forwards(model: LlamaForCausalLM) -> tuple[list[int], torch.utils.hooks.RemovableHandle]:
    calls: list[int] = []
    handle = model.get_decoder().register_forward_hook(lambda *_: calls.append(1))
    return calls, handle


def test_resume_equals_uninterrupted_and_skips_done_batches(
    model: LlamaForCausalLM, tmp_path: Path
) -> None:
    dataset = make_dataset()
    reference = extract(model, tmp_path / "ref.h5", loader(dataset))
    path = tmp_path / "t.h5"
    with pytest.raises(KeyboardInterrupt):
        extract(model, path, interrupted(loader(dataset), after=2))
    calls, handle = count_forwards(model)
    try:
        with TeacherStoreWriter(path, meta()) as writer:
            assert writer.num_done == 4
            stats = extract_topk(model, loader(dataset), writer, progress=False)
    finally:
        handle.remove()
    assert len(calls) == 2  # only the two batches not yet in the store ran the model
    assert (stats.examples, stats.positions) == (4, sum(e["response"] for e in dataset[4:]))
    assert_same_data(reference, path)


def test_resume_mid_batch_and_wrong_order(model: LlamaForCausalLM, tmp_path: Path) -> None:
    dataset = make_dataset()
    reference = TeacherStore(extract(model, tmp_path / "ref.h5", loader(dataset)))
    path = tmp_path / "t.h5"
    with pytest.raises(KeyboardInterrupt):
        extract(model, path, interrupted(loader(dataset), after=2))
    with (
        pytest.raises(ValueError, match="another order than the partial store"),
        TeacherStoreWriter(path, meta()) as writer,
    ):
        extract_topk(model, loader(dataset[::-1]), writer, progress=False)
    extract(model, path, loader(dataset, batch_size=3))  # 4 done: the second batch straddles
    store = TeacherStore(path)
    assert store.example_ids == reference.example_ids
    for i in range(len(dataset)):
        ref_ids, ref_probs, ref_gold = reference.positions(i)
        ids, probs, gold = store.positions(i)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_allclose(probs, ref_probs, rtol=1e-5)
        np.testing.assert_array_equal(gold, ref_gold)


def test_two_rank_shards_merged_equal_one_process(model: LlamaForCausalLM, tmp_path: Path) -> None:
    dataset = make_dataset()
    single = extract_shard(
        model, dataset, collate, tmp_path / "one.h5", meta(), batch_size=2, progress=False
    )
    out = tmp_path / "two.h5"
    for rank in (0, 1):
        shard = extract_shard(
            model,
            dataset,
            collate,
            out,
            meta(),
            rank=rank,
            world_size=2,
            batch_size=2,
            progress=False,
        )
        assert shard == shard_path(out, rank, 2)
        assert TeacherStore(shard).example_ids == [
            dataset[i]["example_id"] for i in rank_range(8, rank, 2)
        ]
    merged = merge_rank_shards(out, world_size=2)
    assert not shard_path(out, 0, 2).exists()
    assert_same_data(single, merged)


def test_shards_have_the_width_of_the_longest_id_of_the_whole_dataset(
    model: LlamaForCausalLM, tmp_path: Path
) -> None:
    dataset = make_dataset(6)
    dataset[-1]["example_id"] = "the-longest-id-é"  # 17 bytes in UTF-8, in rank 1's block only
    out = tmp_path / "t.h5"
    for rank in (0, 1):
        shard = extract_shard(
            model, dataset, collate, out, meta(), rank=rank, world_size=2, progress=False
        )
        with h5py.File(shard, "r") as f:
            assert f["example_ids"].dtype == np.dtype("S17")
    merged = TeacherStore(merge_rank_shards(out, world_size=2))
    assert merged.example_ids == [e["example_id"] for e in dataset]
    with pytest.raises(ValueError, match="'the-longest-id-é' is 17 bytes in UTF-8, longer than"):
        extract_shard(model, dataset, collate, tmp_path / "u.h5", meta(), id_length=16)


def test_rank_range_partitions_in_order() -> None:
    blocks = [rank_range(10, r, 3) for r in range(3)]
    assert [list(b) for b in blocks] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    with pytest.raises(ValueError, match="rank 3 outside"):
        rank_range(10, 3, 3)


def test_vocab_mismatch_is_refused(model: LlamaForCausalLM, tmp_path: Path) -> None:
    other = StoreMetadata(**{**meta().__dict__, "vocab_size": VOCAB + 1})
    with (
        pytest.raises(ValueError, match="model's vocab is 300"),
        TeacherStoreWriter(tmp_path / "t.h5", other) as w,
    ):
        extract_topk(model, loader(make_dataset(2)), w, progress=False)


def test_tokenizer_fingerprint_tracks_vocab_and_specials() -> None:
    def tokenizer(vocab: dict[str, int], eos: str) -> PreTrainedTokenizerFast:
        model = WordLevel(vocab, unk_token="[UNK]")
        return PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer(model), unk_token="[UNK]", eos_token=eos
        )

    base = {"[UNK]": 0, "a": 1, "b": 2, "<eos>": 3, "<end>": 4}
    fp = tokenizer_fingerprint(tokenizer(base, "<eos>"))
    assert len(fp) == 64
    assert fp == tokenizer_fingerprint(tokenizer(dict(reversed(base.items())), "<eos>"))
    assert fp != tokenizer_fingerprint(tokenizer({**base, "a": 2, "b": 1}, "<eos>"))
    assert fp != tokenizer_fingerprint(tokenizer(base, "<end>"))


def _distributed_worker(rank: int, out: str, init_file: str) -> None:
    """One rank of a 2-process gloo group: the same model (seeded) and data on every rank."""
    from first_pl.teacher.extract import extract_distributed

    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=2
    )
    try:
        torch.manual_seed(0)
        model = LlamaForCausalLM(tiny_llama_config(VOCAB))
        extract_distributed(
            model, make_dataset(), collate, out, meta(), batch_size=2, progress=False
        )
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_processes_equal_one_process(model: LlamaForCausalLM, tmp_path: Path) -> None:
    single = extract_shard(
        model, make_dataset(), collate, tmp_path / "one.h5", meta(), batch_size=2, progress=False
    )
    out = tmp_path / "two.h5"
    torch.multiprocessing.spawn(
        _distributed_worker, args=(str(out), str(tmp_path / "init")), nprocs=2
    )
    assert not shard_path(out, 1, 2).exists()
    assert_same_data(single, out)
