"""DistillKit's offline teacher logits into the HDF5 store (`first-pl import-store --format
distillkit`), against a dense teacher written here and encoded the way DistillKit encodes.

The encoder below re-implements DistillKit's, read from arcee-ai/DistillKit at commit
a61c2e7d25c2e990d45832e12bd8542bdee9c810:
- distillkit/compression/compressor.py ``LogprobCompressor.compress_from_sparse`` (sort by
  log-probability, ``compress_monotonic_logprobs``, ``pack_to_bytes`` of the ids with
  ``ceil(log2(d))`` bits);
- distillkit/compression/monotonic_logprobs.py ``compress_monotonic_logprobs`` (delta coding,
  exact values, ``fit_polynomial`` / ``_solve_least_squares``, ``quantize_naive``);
- distillkit/compression/bitpack.py ``pack_to_bytes`` (MSB-first bit stream);
- distillkit/sample_logits_vllm.py + sample_common.py (``compressed_logit_schema``, the
  ``data_<i>.parquet`` files, ``compression_config.yaml``, the pad token added by
  ``truncate_tokens(add_extra_pad_token=True)``, the first prompt position dropped).
Its error-diffusion option is not re-implemented (it only changes the encoder's rounding).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from test_store_interop import TASK, data_config  # the same data config as the other sources

from first_pl.cli import main
from first_pl.data.qa_datamodule import QADataModule
from first_pl.data.store import TeacherStore, TeacherStoreError
from first_pl.data.store.distillkit import (
    Compression,
    QuantizationBin,
    decode_logprobs,
    unpack_bits,
)
from first_pl.data.store.interop import response_positions
from first_pl.tasks import GeneratedMC

K = 6
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
CONFIGS = {
    # exact values only, delta coded: lossless up to float32 rounding
    "exact": {"exact_k": K, "exact_dtype": "float32", "residual_bins": []},
    # DistillKit README's recommended capture settings (bfloat16 exact, polynomial with sqrt)
    "readme": {
        "exact_k": 2,
        "exact_dtype": "bfloat16",
        "polynomial_terms": [0, 1, 2, 3, 4, "sqrt"],
        "residual_bins": [],
        "delta_encoding": False,
    },
    # polynomial plus two residual bins that leave the last approximated entry unquantised
    "bins": {
        "exact_k": 1,
        "polynomial_terms": [0, 1, 2],
        "normalize_t": True,
        "residual_bins": [
            {"scale_dtype": "float16", "element_bits": 4, "num_elements": 3},
            {"scale_dtype": "float32", "element_bits": 6, "num_elements": 1},
        ],
    },
}


# -- DistillKit's encoder, re-implemented ---------------------------------------------------


def pack_to_bytes(x: torch.Tensor, bits: int) -> torch.Tensor:
    """bitpack.py pack_to_bytes: each element's bits MSB first, zero-padded to whole bytes."""
    stream = ((x.unsqueeze(-1) >> torch.arange(bits - 1, -1, -1)) & 1).flatten(-2)
    stream = torch.nn.functional.pad(stream, (0, (8 - stream.shape[-1] % 8) % 8))
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1])
    return (stream.reshape(*x.shape[:-1], -1, 8) * weights).sum(-1).to(torch.uint8)


def as_bytes(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(torch.uint8).reshape(*x.shape[:-1], -1)


def encode(logprobs: torch.Tensor, ids: torch.Tensor, cfg: dict):
    """compress_from_sparse for ``[n, K]`` float32 top-k rows (term_dtype float32, no error
    diffusion) -> (logprob bytes, id bytes, bound):
    ``bound`` is the format's error bound per entry (exact rounding, the polynomial residual, a
    bin's scale), summed along the row under delta coding."""
    order = torch.sort(logprobs, descending=True, dim=-1).indices
    values, ids = logprobs.gather(-1, order), ids.gather(-1, order)
    if cfg.get("delta_encoding", True):
        values = torch.cat([values[:, :1], values[:, 1:] - values[:, :-1]], -1)
    exact_k = cfg["exact_k"]
    exact = values[:, :exact_k].to(DTYPES[cfg.get("exact_dtype", "float32")])
    chunks, bound = [as_bytes(exact)], [(exact.double() - values[:, :exact_k].double()).abs()]
    residual = values[:, exact_k:]
    if cfg.get("polynomial_terms"):
        n = residual.shape[-1]
        pts = torch.linspace(0, 1, n) if cfg.get("normalize_t") else torch.arange(n).float()
        terms = cfg["polynomial_terms"]
        x = torch.stack(
            [pts**t if isinstance(t, int) else getattr(torch, t)(pts) for t in terms], -1
        )
        x = x.unsqueeze(0)  # fit_polynomial: one [1, n, terms] design for every row
        u, s, vh = torch.linalg.svd(x, full_matrices=False)  # _solve_least_squares
        s_inv = torch.where(s > 1e-5, 1 / s, torch.zeros_like(s))
        fit = s_inv.unsqueeze(-1) * (u.transpose(-1, -2) @ residual.unsqueeze(-1))
        coeffs = (vh.transpose(-1, -2) @ fit).squeeze(-1)
        residual = residual - (x * coeffs.unsqueeze(-2)).sum(-1)
        chunks.append(as_bytes(coeffs))
    start, errors = 0, residual.double().abs()
    for b in cfg["residual_bins"]:
        part = residual[:, start : start + b["num_elements"]]
        half = 2 ** (b["element_bits"] - 1)
        scale = part.abs().amax(-1, keepdim=True) / half  # quantize_naive
        scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        scale = scale.to(DTYPES[b["scale_dtype"]]).float()
        codes = (torch.round(part / scale).clamp(-half, half - 1) + half).long()
        chunks += [
            as_bytes(scale.to(DTYPES[b["scale_dtype"]])),
            pack_to_bytes(codes, b["element_bits"]),
        ]
        errors[:, start : start + b["num_elements"]] = scale.double() * 1.01
        start += b["num_elements"]
    bound = torch.cat([*bound, errors], -1)
    if cfg.get("delta_encoding", True):
        bound = bound.cumsum(-1)
    return torch.cat(chunks, -1), pack_to_bytes(ids, index_bits(cfg["d"])), bound + 1e-5


def index_bits(d: int) -> int:
    return int(torch.log2(torch.tensor(d, dtype=torch.float32)).ceil().item())


# -- the data, its dense teacher, and DistillKit's files --------------------------------------


@pytest.fixture(scope="module")
def data(tiny_model_dir):
    return QADataModule(
        tokenizer=str(tiny_model_dir), train_task=GeneratedMC(**TASK), max_length=64
    )


def distillkit_vocab(tokenizer) -> int:
    """sample_logits_vllm.py's auto vocabulary size: max(len(vocab) + 1, max id)."""
    vocab = tokenizer.get_vocab()
    return max(len(vocab) + 1, max(vocab.values()))


@pytest.fixture(scope="module")
def teacher(data):
    """DistillKit rows per example: its input_ids (the data's tokens, plus the pad token on
    all but the first) and a dense teacher log-softmax for input_ids[j + 1], j = 0..n - 2,
    whose top K are at least 0.3 nats apart (so quantisation cannot reorder them)."""
    gen, vocab = torch.Generator().manual_seed(0), len(data.tokenizer)
    out = {}
    for i, ex in enumerate(data.examples(data.train_task, "train")):
        input_ids = ex.input_ids + ([] if i == 0 else [data.tokenizer.pad_token_id])
        logits = torch.randn(len(input_ids) - 1, vocab, generator=gen)
        top = torch.rand(len(input_ids) - 1, vocab, generator=gen).argsort(-1)[:, :K]
        gaps = 0.3 + 0.7 * torch.rand(len(input_ids) - 1, K, generator=gen)
        logits.scatter_(-1, top, 8.0 - gaps.cumsum(-1))
        out[ex.example_id] = (ex, input_ids, torch.log_softmax(logits, -1))
    return out


def write_distillkit(folder: Path, teacher, cfg: dict, extra_row: bool = True) -> Path:
    """sample-logits' output folder: two data_<i>.parquet files and compression_config.yaml."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    folder.mkdir()
    config = {
        "d": cfg["d"], "k": K, "exact_dtype": "float32", "polynomial_terms": None,
        "term_dtype": "float32", "delta_encoding": True, "error_diffusion": False,
        "normalize_t": False, **cfg,
    }  # fmt: skip
    (folder / "compression_config.yaml").write_text(yaml.safe_dump(config))
    rows = []
    for _, input_ids, dense in teacher.values():
        values, ids = torch.topk(dense, K, dim=-1)
        logprob_bytes, id_bytes, _ = encode(values, ids, cfg)
        rows.append((input_ids, logprob_bytes.tolist(), id_bytes.tolist()))
    if extra_row:  # a row of another split
        rows.append(([1, 2], rows[0][1][:1], rows[0][2][:1]))
    schema = pa.schema(  # sample_common.py compressed_logit_schema
        [
            pa.field("input_ids", pa.list_(pa.uint64())),
            pa.field("compressed_logprobs", pa.list_(pa.list_(pa.uint8()))),
            pa.field("bytepacked_indices", pa.list_(pa.list_(pa.uint8()))),
        ]
    )
    rows = rows[::-1]
    for i, part in enumerate((rows[: len(rows) // 2], rows[len(rows) // 2 :])):
        records = [dict(zip(schema.names, row, strict=True)) for row in part]
        table = pa.Table.from_pylist(records, schema=schema)
        pq.write_table(table, folder / f"data_{i}.parquet")
    return folder


def run_import(tmp_path, model_dir, source, out, *extra):
    main(
        ["import-store", "--config", str(data_config(tmp_path, model_dir)), "--source", str(source)]
        + ["--format", "distillkit", "--output", str(out), "--probs_dtype", "float32", *extra]
    )
    return TeacherStore(out)


# -- tests ---------------------------------------------------------------------------------------


def test_bit_unpacking_and_decoding_by_hand():
    """DistillKit's own bitpack test case, a 16-bit id, and one row decoded by hand: exact
    -0.5 (float32), a float16 scale 0.25 and 4-bit codes 4, 6 -> deltas -1.0, -0.5."""
    assert unpack_bits(torch.tensor([172], dtype=torch.uint8), 3, 2).tolist() == [5, 3]
    ids = torch.tensor([0xBF, 0xFF, 0x00, 0x01], dtype=torch.uint8)
    assert unpack_bits(ids, 16, 2).tolist() == [49151, 1]
    c = Compression(d=100, k=3, exact_k=1, residual_bins=(QuantizationBin("float16", 4, 2),))
    raw = struct.pack("<f", -0.5) + struct.pack("<e", 0.25) + bytes([0b0100_0110])
    assert c.logprob_bytes() == len(raw) and c.index_bytes() == 3  # 3 ids of 7 bits
    decoded = decode_logprobs(torch.tensor([list(raw)] * 2, dtype=torch.uint8), c)
    assert decoded.tolist() == [[-0.5, -1.5, -2.0]] * 2


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_distillkit_import_matches_the_dense_teacher_within_the_format_error(
    tmp_path, tiny_model_dir, data, teacher, name, capsys
):
    cfg = {**CONFIGS[name], "d": distillkit_vocab(data.tokenizer)}
    source = write_distillkit(tmp_path / "logits", teacher, cfg)
    store = run_import(tmp_path, tiny_model_dir, source, tmp_path / "s.h5", "--k", str(K - 1))
    assert (
        "1 DistillKit row(s) match no example of this split; not imported"
        in capsys.readouterr().out
    )
    assert store.metadata.k == K - 1 and len(store) == len(teacher)
    worst = 0.0
    for example_id, (ex, _, dense) in teacher.items():
        ids, probs, gold = store.positions(store.example_index(example_id))
        positions = response_positions(ex.labels)
        values, want = torch.topk(dense[positions], K, dim=-1)
        np.testing.assert_array_equal(ids, want[:, : K - 1].numpy())
        np.testing.assert_array_equal(gold, [ex.labels[t] for t in positions])
        bound = encode(values, want, cfg)[2][:, : K - 1]
        error = (torch.from_numpy(np.log(probs)).double() - values[:, : K - 1].double()).abs()
        assert (error <= bound).all(), (error - bound).max()
        worst = max(worst, float(error.max()))
    assert worst < {"exact": 1e-5, "readme": 0.1, "bins": 0.1}[name]
    from first_pl.data.distill_datamodule import DistillDataModule

    DistillDataModule(
        store=str(tmp_path / "s.h5"),
        tokenizer=str(tiny_model_dir),
        train_task=GeneratedMC(**TASK),
        max_length=64,
    ).validate_store(store)


def test_bad_distillkit_input_is_refused_by_file_and_field(tmp_path, tiny_model_dir, data, teacher):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    cfg = {**CONFIGS["bins"], "d": distillkit_vocab(data.tokenizer)}
    source = write_distillkit(tmp_path / "logits", teacher, cfg)
    config, vocab, bits = (
        source / "compression_config.yaml",
        len(data.tokenizer),
        index_bits(cfg["d"]),
    )
    base = yaml.safe_load(config.read_text())
    cases = {
        f"{config}: d={vocab - 1} is smaller than the student tokenizer's {vocab} tokens": {
            "d": vocab - 1
        },
        # the ids were packed for k = K, the config claims K + 2
        f"row \\d+: field 'bytepacked_indices' holds {(K * bits + 7) // 8} bytes a position but "
        f"compression_config.yaml gives {((K + 2) * bits + 7) // 8}": {"k": K + 2},
        f"{config} is not DistillKit's DistributionQuantizationConfig: .*'delta_encodng'": {
            "delta_encodng": False
        },
        f"{config}: k={K} top tokens, fewer than k={K + 1}; import with a smaller --k": {},
    }
    for expected, change in cases.items():
        config.write_text(yaml.safe_dump({**base, **change}))
        with pytest.raises(TeacherStoreError, match=expected):
            run_import(
                tmp_path,
                tiny_model_dir,
                source,
                tmp_path / "x.h5",
                "--k",
                str(K if change else K + 1),
            )
        assert not (tmp_path / "x.h5").exists()
    config.write_text(yaml.safe_dump(base))

    legacy = tmp_path / "legacy"  # DistillKit's legacy layout
    legacy.mkdir()
    (legacy / "compression_config.yaml").write_text(config.read_text())
    legacy_row = {"input_ids": [[1, 2]], "packed_indices": [[[1]]], "exact_values": [[[0.5]]]}
    pq.write_table(pa.table(legacy_row), legacy / "data_0.parquet")
    with pytest.raises(
        TeacherStoreError,
        match=r"legacy/data_0.parquet: no field\(s\) \['compressed_logprobs', 'bytepacked_indices'\]",
    ):
        run_import(tmp_path, tiny_model_dir, legacy, tmp_path / "x.h5")

    part = source / "data_1.parquet"
    rows = pq.read_table(part).to_pylist()
    rows[-1]["input_ids"][1] += 1  # one example captured from another tokenisation
    pq.write_table(pa.Table.from_pylist(rows, pq.read_schema(part)), part)
    first = next(iter(teacher))
    with pytest.raises(
        TeacherStoreError, match=f"no row's input_ids are the data's tokens of example {first!r}"
    ):
        run_import(tmp_path, tiny_model_dir, source, tmp_path / "x.h5")


def test_token_ids_outside_the_student_vocabulary_are_refused(
    tmp_path, tiny_model_dir, data, teacher
):
    """A wider ``d`` packs ids with more bits; an id past the tokenizer is named, not stored."""
    vocab = len(data.tokenizer)
    cfg = {**CONFIGS["exact"], "d": 4 * vocab}
    wide = {}
    for example_id, (ex, input_ids, dense) in teacher.items():
        wide[example_id] = (
            ex,
            input_ids,
            torch.cat([dense, torch.full((len(dense), 3 * vocab), -50.0)], -1),
        )
    ex, input_ids, dense = next(iter(wide.values()))
    dense[response_positions(ex.labels)[0], 3 * vocab] = (
        0.0  # the top token, outside the vocabulary
    )
    source = write_distillkit(tmp_path / "logits", wide, cfg, extra_row=False)
    with pytest.raises(
        TeacherStoreError,
        match=f"bytepacked_indices holds token id {3 * vocab}, outside the student tokenizer's {vocab} tokens",
    ):
        run_import(tmp_path, tiny_model_dir, source, tmp_path / "x.h5")
