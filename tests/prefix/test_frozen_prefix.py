"""The frozen prefix is exact: logits through its memo (and through a saved and reloaded memo)
equal the whole model's, and a joined export is the same model again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from first_pl_testing import BIGBENCH, tiny_run_args
from transformers import AutoModelForCausalLM

from first_pl.cli import main
from first_pl.commands.export import export
from first_pl.data.qa_datamodule import QADataModule
from first_pl.data.template import PromptTemplate
from first_pl.lm_head import logits_at
from first_pl.methods import FineTune
from first_pl.methods.checkpoint import load_method
from first_pl.models import ModelSpec, build_model, save_tiny_llama
from first_pl.prefix import PrefixSettingsError, join_prefix, prefix_of
from first_pl.prefix.frozen import sequence_key
from first_pl.prefix.store import PrefixStoreError, load_memo, save_memo
from first_pl.tasks import BigBench, GeneratedMC

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def six_layers(tmp_path_factory, tiny_tokenizer):
    return save_tiny_llama(tmp_path_factory.mktemp("six"), tiny_tokenizer, layers=6, seed=3)


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three right-padded rows of different lengths, and every real position selected."""
    ids = torch.tensor([[5, 9, 14, 3, 22, 7, 1], [8, 4, 4, 19, 1, 1, 1], [30, 2, 11, 6, 13, 25, 17]])
    lengths = torch.tensor([6, 4, 7])
    mask = (torch.arange(7)[None] < lengths[:, None]).long()
    ids = ids * mask  # pads are token 0 here; they are masked anyway
    return ids, mask, mask.bool()


def test_logits_through_the_prefix_equal_the_whole_model(six_layers):
    whole = build_model(ModelSpec(name_or_path=str(six_layers))).eval()
    split = build_model(ModelSpec(name_or_path=str(six_layers), prefix_layers=4)).eval()
    ids, mask, select = batch()
    with torch.no_grad():
        expected = logits_at(whole, ids, mask, select)
        first = logits_at(split, ids, mask, select)  # computes the prefix: 3 misses
        second = logits_at(split, ids, mask, select)  # reads it: 3 hits
    prefix = prefix_of(split)
    assert (prefix.misses, prefix.hits) == (3, 3) and len(prefix.memo) == 3
    torch.testing.assert_close(first, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(second, first, rtol=0, atol=0)
    # a row alone, unpadded, reads the state the padded batch computed
    with torch.no_grad():
        alone = logits_at(split, ids[1:2, :4], mask[1:2, :4], select[1:2, :4])
    assert prefix.hits == 4
    torch.testing.assert_close(alone, expected[6:10], rtol=0, atol=1e-5)


def test_only_the_layers_above_and_an_untied_head_train(six_layers):
    model = build_model(ModelSpec(name_or_path=str(six_layers), prefix_layers=4, keep_layers=[5]))
    assert model.config.num_hidden_layers == 1 and prefix_of(model).layers == 4
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "lm_head.weight" in trainable and "model.embed_tokens.weight" not in trainable
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    assert not any("first_pl_prefix" in n for n in model.state_dict())  # not in checkpoints
    ids, mask, select = batch()
    loss = logits_at(model, ids, mask, select).logsumexp(-1).sum()
    loss.backward()
    assert model.lm_head.weight.grad is not None
    assert all(p.grad is None for p in prefix_of(model).decoder.parameters())


def test_the_memo_survives_a_store_and_a_store_of_another_prefix_is_refused(six_layers, tmp_path):
    model = build_model(ModelSpec(name_or_path=str(six_layers), prefix_layers=4)).eval()
    ids, mask, select = batch()
    with torch.no_grad():
        expected = logits_at(model, ids, mask, select)
    store = tmp_path / "prefix.h5"
    save_memo(prefix_of(model), store)
    reloaded = build_model(
        ModelSpec(name_or_path=str(six_layers), prefix_layers=4, prefix_cache=str(store))
    ).eval()
    with torch.no_grad():
        again = logits_at(reloaded, ids, mask, select)
    assert (prefix_of(reloaded).hits, prefix_of(reloaded).misses) == (3, 0)
    torch.testing.assert_close(again, expected, rtol=0, atol=0)

    other = build_model(ModelSpec(name_or_path=str(six_layers), prefix_layers=3))
    with pytest.raises(PrefixStoreError, match=r"holds the states of another prefix: prefix_layers 4 \(this model: 3\)"):
        load_memo(prefix_of(other), store)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(PrefixStoreError, match=r"text\.h5 is not a prefix store"):
        load_memo(prefix_of(other), tmp_path / "text.h5")


def test_a_store_keeps_the_prefix_weights_and_its_rows_on_disk_until_a_row_is_missing(six_layers, tmp_path):
    """With a store, the prefix holds no weights and no stored row in memory; a row the store
    lacks reloads the weights from the source and is computed exactly as without a store."""
    model = build_model(ModelSpec(name_or_path=str(six_layers), prefix_layers=4)).eval()
    ids, mask, select = batch()
    with torch.no_grad():
        expected = logits_at(model, ids, mask, select)
    partial = prefix_of(model)
    partial.memo.pop(sequence_key(ids[2, :7]))  # the store will lack the third row
    store = save_memo(partial, tmp_path / "prefix.h5")
    reader = build_model(ModelSpec(name_or_path=str(six_layers), prefix_layers=4, prefix_cache=str(store))).eval()
    prefix = prefix_of(reader)
    assert prefix.offloaded and all(p.is_meta for p in prefix._decoder.parameters())
    with torch.no_grad():
        stored_only = logits_at(reader, ids[:2, :6], mask[:2, :6], select[:2, :6])
    assert (prefix.hits, prefix.misses) == (2, 0) and prefix.memo == {} and prefix.offloaded
    torch.testing.assert_close(stored_only, expected[: int(select[:2].sum())], rtol=0, atol=0)
    with torch.no_grad():
        again = logits_at(reader, ids, mask, select)  # the third row: reload, compute, remember
    assert (prefix.hits, prefix.misses) == (4, 1) and not prefix.offloaded
    assert list(prefix.memo) == [sequence_key(ids[2, :7])]
    torch.testing.assert_close(again, expected, rtol=0, atol=1e-6)
    prefix.offload()
    prefix.reload = None
    with pytest.raises(RuntimeError, match="was offloaded and has no way to reload it"):
        prefix.decoder  # noqa: B018


def test_joined_model_is_a_plain_model_with_the_same_logits(six_layers, tmp_path):
    model = build_model(ModelSpec(name_or_path=str(six_layers), prefix_layers=2, keep_layers=[3, 5])).eval()
    with torch.no_grad():
        for p in model.model.layers.parameters():
            p.add_(0.01 * torch.randn_like(p))  # trained layers differ from the source's
        model.lm_head.weight.mul_(1.5)
    ids, mask, select = batch()
    joined = join_prefix(model)
    joined.save_pretrained(tmp_path / "hf")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert plain.config.num_hidden_layers == 4 and not plain.config.tie_word_embeddings
    with torch.no_grad():
        torch.testing.assert_close(
            logits_at(plain, ids, mask, select), logits_at(model, ids, mask, select), rtol=0, atol=1e-5
        )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"prefix_layers": 6}, r"model\.prefix_layers must be in \[1, 5\] for a model of 6 decoder layers, got 6"),
        ({"prefix_layers": 3, "keep_layers": [2, 4]}, r"model\.keep_layers must name layers above the prefix, in \[3, 6\)"),
    ],
)
def test_bad_prefix_settings_name_the_option(six_layers, spec, message):
    with pytest.raises(PrefixSettingsError, match=message):
        build_model(ModelSpec(name_or_path=str(six_layers), **spec))


def test_settings_that_cannot_combine_are_refused():
    with pytest.raises(ValueError, match="keep_every cannot be combined with model.prefix_layers"):
        ModelSpec(prefix_layers=4, keep_every=2)
    with pytest.raises(ValueError, match="prefix_cache is set but model.prefix_layers is 0"):
        ModelSpec(prefix_cache="x.h5")


def test_a_cli_fit_on_the_prefix_checkpoints_only_the_layers_above_and_exports_whole(six_layers, tmp_path):

    run = tmp_path / "run"
    main(["fit", *tiny_run_args(six_layers, run, "--model.init_args.model.prefix_layers", "4",
                                "--trainer.max_steps", "2", "--trainer.enable_progress_bar", "false",
                                "--trainer.enable_model_summary", "false", sizes=(16, 8, None))])  # fmt: skip
    (checkpoint,) = (run / "checkpoints").glob("*.ckpt")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert {k.split(".")[3] for k in state if ".layers." in k} == {"0", "1"}  # layers 4, 5 only
    module = load_method(checkpoint, expect=FineTune)
    source = AutoModelForCausalLM.from_pretrained(six_layers)
    trained_head = module.model.lm_head.weight
    assert (trained_head - source.lm_head.weight).abs().max() > 0  # the untied head trained
    torch.testing.assert_close(module.model.model.embed_tokens.weight, source.model.embed_tokens.weight)
    ids, mask, select = batch()
    plain = AutoModelForCausalLM.from_pretrained(export(str(checkpoint), str(tmp_path / "hf"))).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            logits_at(plain, ids, mask, select), logits_at(module.model, ids, mask, select), rtol=0, atol=1e-5
        )


def test_prefix_cache_command_stores_every_row_a_job_reads(six_layers, tmp_path):
    """Training, validation, test and option-likelihood rows all come from the store."""

    store = tmp_path / "prefix.h5"
    main([
        "prefix-cache",
        "--data.class_path", "first_pl.data.qa_datamodule.QADataModule",
        "--data.init_args.tokenizer", str(six_layers),
        "--data.init_args.train_task", "first_pl.tasks.GeneratedMC",
        "--data.init_args.train_task.init_args.train_size", "12",
        "--data.init_args.train_task.init_args.validation_size", "6",
        "--data.init_args.train_task.init_args.test_size", "6",
        "--data.init_args.eval_tasks", json.dumps([{"class_path": "first_pl.tasks.BigBench", "init_args": {"path": str(BIGBENCH / "physics"), "limit": 5}}]),
        "--data.init_args.task_templates", json.dumps({"physics": {"scoring": "option_loglik"}}),
        "--model.name_or_path", str(six_layers),
        "--model.prefix_layers", "3",
        "--output", str(store),
        "--batch_size", "4",
    ])  # fmt: skip
    model = build_model(ModelSpec(name_or_path=str(six_layers), prefix_layers=3, prefix_cache=str(store)))
    prefix = prefix_of(model)
    data = QADataModule(
        tokenizer=str(six_layers),
        train_task=GeneratedMC(train_size=12, validation_size=6, test_size=6),
        eval_tasks=[BigBench(str(BIGBENCH / "physics"), limit=5)],
        task_templates={"physics": PromptTemplate(scoring="option_loglik")},
        batch_size=4,
    )
    data.setup("fit")
    module_batches = [
        *data.train_dataloader(),
        *data.split_loader("validation", 4),  # what extraction reads
        *data.split_loader("test", 4),
        *data.test_dataloader()[0],  # physics, with its option rows
    ]
    with torch.no_grad():
        for b in module_batches:
            if "option_input_ids" in b:  # an option-scored batch runs its option rows only
                prefix(b["option_input_ids"], b["option_attention_mask"])
            else:
                prefix(b["input_ids"], b["attention_mask"])
    assert prefix.misses == 0 and prefix.hits > 0
    # Nothing the job never runs: not physics' validation split (the pipeline validates on the
    # training task only), not the prompt rows of an option-scored task.
    unread = [*data.val_dataloader()[0], *data.test_dataloader()[0]]
    assert not any(
        sequence_key(ids[: int(mask.sum())]) in prefix.stored
        for b in unread
        for ids, mask in zip(b["input_ids"], b["attention_mask"], strict=True)
    )
    prefix.misses = 0
    with torch.no_grad():
        rows = sum(prefix(b["option_input_ids"], b["option_attention_mask"]).shape[0] for b in data.val_dataloader()[0])
    assert prefix.misses == rows == 5 * 4  # physics validation: computed when asked, not stored
    assert len(prefix.stored) >= 12 + 6 + 6 + 5 * 2
