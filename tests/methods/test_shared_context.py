"""Option scoring with each prompt run once (first_pl.context_cache) gives the full rows' option
log-probabilities, for every option scoring, with and without a frozen prefix, on a tiny random
Llama and (slow) on the real SmolLM2 over real BIG-bench questions."""

from __future__ import annotations

import pytest
import torch
from first_pl_testing import BIGBENCH

import first_pl.methods.multiple_choice as multiple_choice
from first_pl.commands.prefix_cache import warm_options
from first_pl.context_cache import SharedRows, shared_forward
from first_pl.data.batch import IGNORE_INDEX
from first_pl.data.option_batch import shared_rows
from first_pl.data.template import OPTION_SCORINGS, PromptTemplate
from first_pl.data.tokenize import TruncationReport, collate, encode
from first_pl.methods import FineTune
from first_pl.models import ModelSpec, load_tokenizer, save_tiny_llama
from first_pl.prefix import prefix_of
from first_pl.tasks import BigBench, MCExample

EXAMPLES = [
    MCExample("q0", "Which of these is a fruit?", ("red apple", "dog", "café"), 0),
    MCExample("q1", "Which of these is a very small animal that you can find in a garden?", ("apple", "big dog"), 1),
    MCExample("q2", "Which of these is red?", ("apple", "dog", "the sky", "a cat"), 0),
]


@pytest.fixture(scope="module")
def six_layers(tmp_path_factory, tiny_tokenizer):
    return save_tiny_llama(tmp_path_factory.mktemp("six"), tiny_tokenizer, layers=6, seed=5)


def option_batch(examples, tokenizer, scoring: str, max_length: int = 128):
    template = PromptTemplate(answer="text", scoring=scoring)
    items = [encode(ex, tokenizer, template, max_length, TruncationReport()) for ex in examples]
    return collate(items, tokenizer.pad_token_id)


def split_of(batch) -> SharedRows | None:
    return shared_rows(
        batch["option_input_ids"], batch["option_attention_mask"], batch["option_labels"], batch["option_context"]
    )


def module_of(folder, prefix_layers: int = 0) -> FineTune:
    module = FineTune(model=ModelSpec(name_or_path=str(folder), prefix_layers=prefix_layers))
    module.configure_model()
    return module.eval()


def evaluate(module: FineTune, batch, shared: bool, monkeypatch) -> dict:
    """The module's evaluation with the shared path, or today's full rows (a decoder the shared
    path refuses)."""
    with monkeypatch.context() as patch:
        if not shared:
            patch.setattr(multiple_choice, "shares_context", lambda decoder: False)
        with torch.no_grad():
            return module.evaluate(batch)


def decoder_batches(module: FineTune) -> list[tuple[int, int]]:
    """Record the `[rows, length]` of every forward of the module's (upper) decoder."""
    seen: list[tuple[int, int]] = []
    module.model.get_decoder().layers[0].register_forward_hook(
        lambda layer, args, output: seen.append(tuple(args[0].shape[:2]))
    )
    return seen


def test_the_split_rebuilds_every_row_token_for_token(tiny_tokenizer):
    batch = option_batch(EXAMPLES, tiny_tokenizer, "option_pmi")
    rows = split_of(batch)
    # three prompts and one PMI premise shared by every example's domain rows
    assert rows.context_ids.shape[0] == 4 and batch["option_context"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 1, 1, 3, 3, 3, 3, 1, 1, 1, 1]
    for r in range(batch["option_input_ids"].shape[0]):
        n = int(batch["option_attention_mask"][r].sum())
        q = int(rows.row_context[r])
        context = rows.context_ids[q][rows.context_mask[q].bool()].tolist()
        continuation = rows.continuation_ids[r][rows.continuation_mask[r].bool()].tolist()
        assert context + continuation == batch["option_input_ids"][r, :n].tolist()
        assert rows.positions[r, : len(continuation)].tolist() == list(range(len(context), n))
        labels = batch["option_labels"][r]
        assert rows.select[r].nonzero()[:, 0].add(len(context)).tolist() == (labels != IGNORE_INDEX).nonzero()[:, 0].tolist()


def test_a_one_token_prompt_is_scored_whole(tiny_tokenizer):
    batch = option_batch(EXAMPLES[:1], tiny_tokenizer, "option_loglik")
    labels = batch["option_labels"].clone()
    labels[:, 0] = labels[:, 1]  # the first label at position 0: an empty context
    labels[:, 1:] = IGNORE_INDEX
    assert shared_rows(batch["option_input_ids"], batch["option_attention_mask"], labels, batch["option_context"]) is None


@pytest.mark.parametrize("prefix_layers", [0, 4], ids=["whole", "prefix"])
@pytest.mark.parametrize("scoring", OPTION_SCORINGS)
def test_each_scoring_equals_the_full_rows(six_layers, tiny_tokenizer, scoring, prefix_layers, monkeypatch):
    batch = option_batch(EXAMPLES, tiny_tokenizer, scoring)
    full = evaluate(module_of(six_layers, prefix_layers), batch, shared=False, monkeypatch=monkeypatch)
    module = module_of(six_layers, prefix_layers)
    seen = decoder_batches(module)
    shared = evaluate(module, batch, shared=True, monkeypatch=monkeypatch)
    torch.testing.assert_close(shared["candidate_logprobs"], full["candidate_logprobs"], rtol=0, atol=1e-5)
    assert shared["pred"].tolist() == full["pred"].tolist()
    rows, contexts = batch["option_input_ids"].shape[0], int(batch["option_context"].max()) + 1
    # the prompts once (one row per context), then one continuation per option row
    assert [shape[0] for shape in seen] == [contexts, rows] and contexts < rows
    assert seen[1][1] < batch["option_input_ids"].shape[1] / 2


def test_the_prefix_remembers_the_full_rows_and_reads_them_back(six_layers, tiny_tokenizer, monkeypatch):
    batch = option_batch(EXAMPLES, tiny_tokenizer, "option_pmi")
    ids, mask = batch["option_input_ids"], batch["option_attention_mask"]
    reference = prefix_of(module_of(six_layers, 4).model)
    with torch.no_grad():
        reference(ids, mask)  # today's memo: the prefix over each full row
    module = module_of(six_layers, 4)
    prefix = prefix_of(module.model)
    first = evaluate(module, batch, shared=True, monkeypatch=monkeypatch)
    assert (prefix.misses, prefix.hits) == (ids.shape[0], 0)
    # remembered under the same keys (the full rows; " apple" after the premise twice), with the same states
    assert set(prefix.memo) == set(reference.memo) and len(prefix.memo) == ids.shape[0] - 2
    for key, states in reference.memo.items():
        torch.testing.assert_close(prefix.memo[key], states, rtol=0, atol=1e-5)
    seen = decoder_batches(module)
    second = evaluate(module, batch, shared=True, monkeypatch=monkeypatch)
    assert (prefix.misses, prefix.hits) == (ids.shape[0], ids.shape[0])  # all read back
    torch.testing.assert_close(second["candidate_logprobs"], first["candidate_logprobs"], rtol=0, atol=0)
    assert len(seen) == 2  # the layers above still share the prompt


def test_a_sharded_model_falls_back_to_the_full_rows(six_layers, tiny_tokenizer, monkeypatch):
    module = module_of(six_layers)
    seen = decoder_batches(module)
    monkeypatch.setattr(type(module), "device_mesh", property(lambda self: object()))
    batch = option_batch(EXAMPLES, tiny_tokenizer, "option_loglik")
    with torch.no_grad():
        module.evaluate(batch)
    assert seen == [tuple(batch["option_input_ids"].shape)]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["physics", "social_iqa"])
@pytest.mark.parametrize("prefix_layers", [0, 15], ids=["whole", "prefix"])
def test_smollm2_on_real_questions_equals_the_full_rows(task, prefix_layers, monkeypatch):
    """Within float32 rounding of a reordered attention: a score sums ~30 log-probabilities of
    up to ~15 nats each, which differ by at most ~1.3e-5 (a relative 1e-6), so the scores are
    compared to a relative 1e-5."""
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    examples = BigBench(str(BIGBENCH / task), limit=4).load("test")
    for scoring in ("option_loglik", "option_pmi"):
        batch = option_batch(examples, tokenizer, scoring, max_length=512)
        module = module_of("smollm2-135m-instruct", prefix_layers)
        full = evaluate(module, batch, shared=False, monkeypatch=monkeypatch)
        if prefix_layers:
            prefix_of(module.model).memo.clear()
        shared = evaluate(module, batch, shared=True, monkeypatch=monkeypatch)
        torch.testing.assert_close(shared["candidate_logprobs"], full["candidate_logprobs"], rtol=1e-5, atol=1e-5)
        assert shared["pred"].tolist() == full["pred"].tolist()


def test_the_prefix_cache_command_warms_option_rows_each_prompt_once(six_layers, tiny_tokenizer):
    batch = option_batch(EXAMPLES, tiny_tokenizer, "option_loglik")
    prefix = prefix_of(module_of(six_layers, 4).model)
    seen: list[tuple[int, int]] = []
    prefix.decoder.layers[0].register_forward_hook(lambda layer, args, output: seen.append(tuple(args[0].shape[:2])))
    warm_options(prefix, batch, batch_size=4)
    rows = batch["option_input_ids"].shape[0]
    assert [shape[0] for shape in seen] == [len(EXAMPLES), rows] and len(prefix.memo) == rows
    with torch.no_grad():  # the evaluation's full rows then read every state from the memo
        prefix(batch["option_input_ids"], batch["option_attention_mask"])
    assert (prefix.misses, prefix.hits) == (rows, rows)


def test_continuations_run_in_chunks_of_similar_length_with_the_same_states(six_layers, tiny_tokenizer):
    batch = option_batch(EXAMPLES, tiny_tokenizer, "option_pmi")
    rows = split_of(batch)
    module = module_of(six_layers)
    decoder = module.model.get_decoder()
    with torch.no_grad():
        _, whole = shared_forward(decoder, rows.context_ids, rows.continuation_ids, rows, chunk=100)
        seen = decoder_batches(module)
        _, chunked = shared_forward(decoder, rows.context_ids, rows.continuation_ids, rows, chunk=4)
    torch.testing.assert_close(chunked[rows.select], whole[rows.select], rtol=0, atol=1e-5)
    lengths = sorted(rows.continuation_mask.sum(dim=1).tolist())
    chunks = [lengths[i : i + 4] for i in range(0, len(lengths), 4)]
    # the contexts once, then each chunk of 4 rows, shortest first, as wide as its longest row
    assert seen == [tuple(rows.context_ids.shape)] + [(len(c), max(c)) for c in chunks]
    assert seen[1][1] < seen[-1][1] == rows.continuation_ids.shape[1]
