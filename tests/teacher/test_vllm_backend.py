"""The vLLM extraction backend: vLLM's documented `prompt_logprobs` structure into the same store.

vLLM is an optional extra and is not installed in the project's environment, so the engine is
replaced by `FakeVLLM`, which builds exactly the documented structure from the tiny teacher's
own float32 log-softmax: a list per prompt, None first, then per position a dict
token_id -> Logprob(logprob, rank, decoded_token) of the top-k plus the actual token when it is
not among them (k or k + 1 entries). The store it yields must equal the transformers backend's.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import first_pl.teacher.vllm_backend as vllm_backend
from first_pl.cli import main
from first_pl.data.batch import IGNORE_INDEX
from first_pl.data.store import StoreMetadata, TeacherStore, TeacherStoreWriter, partial_path
from first_pl.data.tokenize import Encoded
from first_pl.models import ModelSpec, build_model

K = 5


@dataclass
class Logprob:
    """vLLM's `vllm.logprobs.Logprob` fields."""

    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


class FakeVLLM:
    """`prompt_logprobs` of the tiny teacher in vLLM's structure; counts entry sizes seen."""

    def __init__(self, model_dir: Path, k: int, fail_on_call: int | None = None) -> None:
        self.model = build_model(ModelSpec(str(model_dir))).eval()
        self.k, self.calls, self.fail_on_call = k, 0, fail_on_call
        self.sizes: set[int] = set()

    def __call__(self, prompts: list[list[int]]) -> list[list[dict[int, Logprob] | None]]:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt("killed")
        out = []
        for ids in prompts:
            with torch.inference_mode():
                logits = self.model(torch.tensor([ids])).logits[0].float()
            log_probs = torch.log_softmax(logits, dim=-1)
            entries: list[dict[int, Logprob] | None] = [None]
            for j in range(1, len(ids)):
                row = log_probs[j - 1]
                top = row.topk(self.k).indices.tolist()
                entry = {}
                for token in [*top, ids[j]]:
                    rank = int((row > row[token]).sum()) + 1
                    entry[token] = Logprob(float(row[token]), rank, f"<{token}>")
                self.sizes.add(len(entry))
                entries.append(entry)
            out.append(entries)
        return out


@pytest.fixture(scope="module")
def config(tmp_path_factory, tiny_model_dir: Path) -> Path:
    """A data config on the tiny tokenizer: 7 generated examples, so the last batch of 3 is short."""
    task = {"class_path": "first_pl.tasks.GeneratedMC", "init_args": {"train_size": 7, "seed": 5}}
    init = {"tokenizer": str(tiny_model_dir), "train_task": task, "max_length": 48}
    path = tmp_path_factory.mktemp("config") / "data.yaml"
    path.write_text(yaml.safe_dump({"data": {"class_path": "first_pl.data.qa_datamodule.QADataModule", "init_args": init}}))
    return path


def run_extract(config: Path, teacher: Path, output: Path, *args: str) -> None:
    precision = [] if "vllm" in args else ["--precision", "32-true"]  # vLLM takes its dtype itself
    main(["extract", "--config", str(config), "--teacher", str(teacher), "--output", str(output),
          "--probs_dtype", "float32", "--batch_size", "3", "--progress", "false",
          "--k", str(K), *precision, *args])  # fmt: skip


def use_fake(monkeypatch, fake: FakeVLLM) -> None:
    monkeypatch.setattr(vllm_backend, "vllm_generate", lambda teacher, k, args: fake)


def test_vllm_store_equals_transformers_store(config, tiny_model_dir, tmp_path, monkeypatch):
    fake = FakeVLLM(tiny_model_dir, K)
    use_fake(monkeypatch, fake)
    run_extract(config, tiny_model_dir, tmp_path / "hf.h5")
    run_extract(config, tiny_model_dir, tmp_path / "vllm.h5", "--backend", "vllm")
    assert fake.sizes == {K, K + 1}  # both the gold-in-top-k and the gold-added entries occurred
    hf, vl = TeacherStore(tmp_path / "hf.h5"), TeacherStore(tmp_path / "vllm.h5")  # checksums verified
    assert vl.metadata == hf.metadata  # same fingerprints: a DistillDataModule accepts either
    assert vl.example_ids == hf.example_ids and list(vl.offsets) == list(hf.offsets)
    for i in range(len(hf)):
        (hf_ids, hf_probs, hf_gold), (vl_ids, vl_probs, vl_gold) = hf.positions(i), vl.positions(i)
        np.testing.assert_array_equal(vl_ids, hf_ids)
        np.testing.assert_array_equal(vl_gold, hf_gold)
        # exp(log_softmax) against softmax, both float32
        np.testing.assert_allclose(vl_probs, hf_probs, rtol=1e-5, atol=1e-7)


def test_killed_vllm_run_resumes_to_the_same_store(config, tiny_model_dir, tmp_path, monkeypatch):
    use_fake(monkeypatch, FakeVLLM(tiny_model_dir, K))
    run_extract(config, tiny_model_dir, tmp_path / "whole.h5", "--backend", "vllm")
    use_fake(monkeypatch, FakeVLLM(tiny_model_dir, K, fail_on_call=2))
    with pytest.raises(KeyboardInterrupt):
        run_extract(config, tiny_model_dir, tmp_path / "resumed.h5", "--backend", "vllm")
    assert partial_path(tmp_path / "resumed.h5").exists()
    second = FakeVLLM(tiny_model_dir, K)
    use_fake(monkeypatch, second)
    run_extract(config, tiny_model_dir, tmp_path / "resumed.h5", "--backend", "vllm")
    assert second.calls == 2  # 7 examples in batches of 3: the first batch was not run again
    whole, resumed = TeacherStore(tmp_path / "whole.h5"), TeacherStore(tmp_path / "resumed.h5")
    assert resumed.example_ids == whole.example_ids
    for i in range(len(whole)):
        for a, b in zip(whole.positions(i), resumed.positions(i), strict=True):
            np.testing.assert_array_equal(a, b)


def example() -> Encoded:
    # prompt 10 11, response 12 13, EOS 2: labels shifted, positions 1, 2, 3 predict 12, 13, 2
    return Encoded("ex", input_ids=[10, 11, 12, 13, 2], labels=[IGNORE_INDEX, 12, 13, 2, IGNORE_INDEX])


def test_topk_rows_drop_the_added_actual_token_and_run_by_log_probability():
    lp = np.log
    prompt_logprobs = [
        None,
        {7: Logprob(lp(0.5), 1)},  # position 0 is no response position: not read
        # predicts 12, which is not in the top-2: k + 1 entries, 12 (rank 9) dropped
        {12: Logprob(lp(0.05), 9), 4: Logprob(lp(0.3), 2), 5: Logprob(lp(0.6), 1)},
        # predicts 13, inside the top-2: k entries
        {13: Logprob(lp(0.7), 1), 6: Logprob(lp(0.2), 2)},
        {8: Logprob(lp(0.4), 1), 2: Logprob(lp(0.4), 1)},  # a tie shares rank 1: the smaller id first
    ]
    ids, probs, gold = vllm_backend.topk_rows(prompt_logprobs, example(), k=2)
    np.testing.assert_array_equal(ids, [[5, 4], [13, 6], [2, 8]])
    np.testing.assert_allclose(probs, [[0.6, 0.3], [0.7, 0.2], [0.4, 0.4]], rtol=1e-6)
    np.testing.assert_array_equal(gold, [12, 13, 2])
    top1, _, _ = vllm_backend.topk_rows(prompt_logprobs, example(), k=1)  # vLLM ran with more: cut
    np.testing.assert_array_equal(top1, [[5], [13], [2]])


def test_topk_rows_refuse_too_few_tokens_a_missing_actual_token_and_missing_positions():
    lp = np.log
    two = {12: Logprob(lp(0.5), 1), 4: Logprob(lp(0.3), 2)}
    entries = [None, None, two, {13: Logprob(lp(0.7), 1)}, {2: Logprob(lp(0.4), 1)}]
    with pytest.raises(ValueError, match=r"vLLM prompt_logprobs: example 'ex' position 3 holds 1 top "
                       r"tokens, fewer than k=2"):  # fmt: skip
        vllm_backend.topk_rows(entries, example(), k=2)
    no_gold = [None, None, {4: Logprob(lp(0.3), 1)}, *entries[3:]]
    with pytest.raises(ValueError, match=r"example 'ex' position 2 scores other tokens than the data's token 12"):
        vllm_backend.topk_rows(no_gold, example(), k=1)
    with pytest.raises(ValueError, match=r"prompt_logprobs of example 'ex' has 3 entries but the data has 5 tokens"):
        vllm_backend.topk_rows(entries[:3], example(), k=1)
    with pytest.raises(ValueError, match=r"example 'ex' has no teacher distribution for response position 2 \(entry 3 of 5\)"):
        vllm_backend.topk_rows([*entries[:3], None, *entries[4:]], example(), k=1)


def test_missing_vllm_names_the_extra(config, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    with pytest.raises(ImportError, match=r"extract --backend vllm needs vLLM, which is not installed: "
                       r"pip install 'first_pl\[vllm\]'"):  # fmt: skip
        run_extract(config, tiny_model_dir, tmp_path / "s.h5", "--backend", "vllm")
    assert not partial_path(tmp_path / "s.h5").exists()


def test_lightning_checkpoint_teacher_is_refused(config, tmp_path):
    with pytest.raises(ValueError, match="reads a Hugging Face model folder, not the Lightning checkpoint"):
        run_extract(config, tmp_path / "teacher.ckpt", tmp_path / "s.h5", "--backend", "vllm")



def test_resume_refuses_a_partial_store_of_other_examples(tiny_model_dir, tmp_path):
    fake = FakeVLLM(tiny_model_dir, K)
    examples = [Encoded(f"ex{i}", input_ids=[5 + i, 6, 7, 2], labels=[IGNORE_INDEX, 7, 2, IGNORE_INDEX]) for i in range(3)]
    metadata = StoreMetadata(k=K, vocab_size=fake.model.config.vocab_size, tokenizer_fingerprint="t",
                             teacher="tiny", task="t", split="train", template_fingerprint="f")  # fmt: skip
    writer = TeacherStoreWriter(tmp_path / "s.h5", metadata).open()
    vllm_backend.write_prompt_logprobs(fake, examples[:2], writer, batch_size=2, progress=False)
    writer.close()  # a killed run: two examples committed to s.h5.partial
    refused = pytest.raises(ValueError, match=r"s\.h5\.partial holds 2 examples that are not the first 2 of this split in order")
    with refused, TeacherStoreWriter(tmp_path / "s.h5", metadata) as writer:
        vllm_backend.write_prompt_logprobs(fake, examples[::-1], writer, batch_size=2, progress=False)
    assert partial_path(tmp_path / "s.h5").exists() and not (tmp_path / "s.h5").exists()


def test_options_of_the_other_backend_are_refused(config, tiny_model_dir, tmp_path):
    argv = ["extract", "--config", str(config), "--teacher", str(tiny_model_dir), "--output", str(tmp_path / "s.h5")]
    with pytest.raises(ValueError, match=r"extract --precision 32-true applies to --backend transformers; "
                       r"with --backend vllm give vLLM's dtype in --vllm_args"):  # fmt: skip
        main([*argv, "--backend", "vllm", "--precision", "32-true"])
    with pytest.raises(ValueError, match=r"extract --vllm_args \{'dtype': 'bfloat16'\} needs --backend vllm"):
        main([*argv, "--vllm_args", "{dtype: bfloat16}"])
    assert list(tmp_path.iterdir()) == []
