"""DistillKit's offline teacher logits (arcee-ai/DistillKit ``sample-logits``) as store records
(docs/STORE_FORMAT.md, "Import").

DistillKit writes a folder of ``data_<i>.parquet`` files with the columns ``input_ids``,
``compressed_logprobs`` and ``bytepacked_indices`` (one byte row per position) and the
``compression_config.yaml`` (its ``DistributionQuantizationConfig``) it encoded them with. The
decoder below follows DistillKit's own, ``LogprobCompressor.decompress_to_sparse`` ->
``decompress_monotonic_logprobs`` and ``unpack_from_bytes`` (distillkit/compression/*.py at
commit a61c2e7d25c2e990d45832e12bd8542bdee9c810), operation by operation and in the same
dtypes, so first_pl trains on exactly the values DistillKit would.

The files carry no example ids: a row is joined to the example whose ``input_ids`` it holds
(or holds plus one trailing token: ``sample-logits`` appends a pad token). Equal token ids are
the tokenizer check; row ``t`` is the distribution of ``input_ids[t + 1]``, i.e. store row ``t``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from first_pl.data.batch import response_positions
from first_pl.data.store.format import StoreMetadata, TeacherStoreError
from first_pl.data.tokenize import Encoded

COLUMNS = ("input_ids", "compressed_logprobs", "bytepacked_indices")
CONFIG_NAME = "compression_config.yaml"
DTYPES = {name: getattr(torch, name) for name in ("float16", "bfloat16", "float32", "float64")}
SPECIAL_TERMS = {"sqrt": torch.sqrt, "exp": torch.exp}


@dataclass(frozen=True)
class QuantizationBin:
    scale_dtype: str
    element_bits: int
    num_elements: int


@dataclass(frozen=True)
class Compression:
    """DistillKit's ``DistributionQuantizationConfig``: what the bytes of a row mean."""

    d: int
    k: int
    exact_k: int
    residual_bins: tuple[QuantizationBin, ...]
    exact_dtype: str = "float32"
    polynomial_terms: tuple[int | str, ...] = ()
    term_dtype: str = "float32"
    delta_encoding: bool = True
    error_diffusion: bool = False  # the encoder's choice; decoding is the same
    normalize_t: bool = False

    @property
    def index_bits(self) -> int:
        """``LogprobCompressor.vocab_index_bits``, computed in float32 as DistillKit does."""
        return int(torch.log2(torch.tensor(self.d, dtype=torch.float32)).ceil().item())

    def logprob_bytes(self) -> int:
        size = self.exact_k * DTYPES[self.exact_dtype].itemsize
        size += len(self.polynomial_terms) * DTYPES[self.term_dtype].itemsize
        return size + sum(
            DTYPES[b.scale_dtype].itemsize + (b.num_elements * b.element_bits + 7) // 8
            for b in self.residual_bins
        )

    def index_bytes(self) -> int:
        return (self.k * self.index_bits + 7) // 8


def read_compression(path: Path, meta: StoreMetadata) -> Compression:
    """The config beside the parquet files: DistillKit's ``compression_config.yaml``, or a
    training config holding it under ``teacher.logprob_compressor``. Unknown keys are refused
    (a misspelt ``delta_encoding`` would decode every row wrongly), and so are a vocabulary
    smaller than the student tokenizer's and fewer than ``meta.k`` top tokens."""
    import yaml

    if not path.is_file():
        raise TeacherStoreError(
            f"{path} does not exist: DistillKit's sample-logits writes it beside the parquet "
            "files (or copy there the teacher.logprob_compressor block of its training config)"
        )
    raw: Any = yaml.safe_load(path.read_text())
    for key in ("teacher", "logprob_compressor"):
        raw = raw.get(key, raw) if isinstance(raw, dict) else raw
    try:
        bins = tuple(QuantizationBin(**b) for b in raw.get("residual_bins") or ())
        terms = tuple(raw.get("polynomial_terms") or ())
        config = Compression(**{**raw, "residual_bins": bins, "polynomial_terms": terms})
    except (TypeError, AttributeError) as err:
        raise TeacherStoreError(
            f"{path} is not DistillKit's DistributionQuantizationConfig: {err}"
        ) from err
    if problem := _problem(config, meta):
        raise TeacherStoreError(f"{path}: {problem}")
    return config


def _problem(c: Compression, meta: StoreMetadata) -> str:
    """DistillKit's ``check_valid`` and field constraints, the dtypes and terms it knows, and
    what the store needs."""
    dtypes = [c.exact_dtype, c.term_dtype, *(b.scale_dtype for b in c.residual_bins)]
    if not set(dtypes) <= set(DTYPES):
        return f"dtypes must be among {sorted(DTYPES)}, got {dtypes}"
    if not all(t in SPECIAL_TERMS or isinstance(t, int) and t >= 0 for t in c.polynomial_terms):
        return f"polynomial_terms must be powers >= 0 or {sorted(SPECIAL_TERMS)}"
    if not all(1 <= b.element_bits <= 64 and b.num_elements >= 1 for b in c.residual_bins):
        return "residual_bins need 1 <= element_bits <= 64 and num_elements >= 1"
    if not (c.d > 0 and c.k > 0 and 0 <= c.exact_k <= c.k):
        return f"need d > 0, k > 0 and 0 <= exact_k <= k, got d={c.d}, k={c.k}, exact_k={c.exact_k}"
    if c.exact_k < c.k and not c.polynomial_terms and not c.residual_bins:
        return "exact_k < k needs polynomial_terms or residual_bins"
    if sum(b.num_elements for b in c.residual_bins) > c.k - c.exact_k:
        return "residual_bins hold more than k - exact_k elements"
    if c.d < meta.vocab_size:
        return f"d={c.d} is smaller than the student tokenizer's {meta.vocab_size} tokens: another vocabulary"
    if c.k < meta.k:
        return f"k={c.k} top tokens, fewer than k={meta.k}; import with a smaller --k"
    return ""


def unpack_bits(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """DistillKit's ``unpack_from_bytes``: ``n`` unsigned ``bits``-bit integers from an
    MSB-first bit stream over the last dimension (zero padding at the end)."""
    stream = ((packed.long().unsqueeze(-1) >> torch.arange(7, -1, -1)) & 1).flatten(-2)
    stream = stream[..., : n * bits].reshape(*packed.shape[:-1], n, bits)
    return (stream * 2 ** torch.arange(bits - 1, -1, -1)).sum(-1)


def _dequantize(q: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    if bits == 1:  # DistillKit maps the 1-bit codes 0 / 1 to -scale / +scale
        return (q.to(torch.float32) * 2.0 - 1.0) * scale
    return (q - 2 ** (bits - 1)).to(torch.float32) * scale


def _polynomial_terms(c: Compression, t: int) -> torch.Tensor:
    dtype = DTYPES[c.term_dtype]
    pts = torch.linspace(0, 1, t, dtype=dtype) if c.normalize_t else torch.arange(t, dtype=dtype)
    return torch.stack(
        [pts**i if isinstance(i, int) else SPECIAL_TERMS[i](pts) for i in c.polynomial_terms], -1
    )


def decode_logprobs(raw: torch.Tensor, c: Compression) -> torch.Tensor:
    """``[..., logprob_bytes]`` uint8 -> ``[..., k]`` log-probabilities in ``exact_dtype``:
    exact values, polynomial fit plus dequantised residual bins, then the inverse delta coding."""
    lead, out_dtype, cursor = raw.shape[:-1], DTYPES[c.exact_dtype], 0

    def take(nbytes: int, dtype: torch.dtype = torch.uint8) -> torch.Tensor:
        nonlocal cursor
        part = raw[..., cursor : cursor + nbytes].clone(memory_format=torch.contiguous_format)
        cursor += nbytes
        return part.view(dtype) if nbytes else torch.empty((*lead, 0), dtype=dtype)

    exact = take(c.exact_k * DTYPES[c.exact_dtype].itemsize, out_dtype)
    coeffs = take(len(c.polynomial_terms) * DTYPES[c.term_dtype].itemsize, DTYPES[c.term_dtype])
    residuals = []
    for b in c.residual_bins:
        scale = take(DTYPES[b.scale_dtype].itemsize, DTYPES[b.scale_dtype])
        codes = unpack_bits(
            take((b.num_elements * b.element_bits + 7) // 8), b.element_bits, b.num_elements
        )
        residuals.append(_dequantize(codes, scale, b.element_bits))
    approx_terms = c.k - c.exact_k
    residual = torch.zeros((*lead, approx_terms), dtype=out_dtype)  # no bins: residual 0
    if residuals:  # zero-padded past the bins
        residual = torch.cat(residuals, -1)
        residual = torch.nn.functional.pad(residual, (0, approx_terms - residual.shape[-1]))
    if c.polynomial_terms:
        fit = (_polynomial_terms(c, approx_terms).to(coeffs.dtype) * coeffs.unsqueeze(-2)).sum(-1)
        approx = fit + residual.to(out_dtype)
    else:
        approx = residual.to(out_dtype)
    logprobs = torch.cat([exact.to(out_dtype), approx], -1)
    if c.delta_encoding:
        logprobs = torch.cumsum(logprobs.float(), -1).to(out_dtype)
    return logprobs


class _ByteRows:
    """One ``list<list<uint8>>`` column of a file: per record a ``[positions, width]`` matrix."""

    def __init__(self, table: Any, name: str, width: int, where: str):
        import pyarrow as pa

        column = table.column(name).combine_chunks()
        if column.type != pa.list_(pa.list_(pa.uint8())) or column.null_count:
            raise TeacherStoreError(
                f"{where}: field {name!r} is {column.type} with {column.null_count} nulls; "
                "DistillKit writes list<list<uint8>> without nulls"
            )
        self.outer, self.inner = column.offsets.to_numpy(), column.values.offsets.to_numpy()
        self.values = column.values.values.to_numpy(zero_copy_only=False)
        self.name, self.width, self.where = name, width, where

    def rows(self, record: int) -> torch.Tensor:
        bounds = self.inner[self.outer[record] : self.outer[record + 1] + 1]
        wrong = np.diff(bounds)[np.diff(bounds) != self.width]
        if len(wrong):
            raise TeacherStoreError(
                f"{self.where} row {record}: field {self.name!r} holds {wrong[0]} bytes a position "
                f"but {CONFIG_NAME} gives {self.width} (k, d or the compression settings differ "
                "from the capture)"
            )
        return torch.tensor(self.values[bounds[0] : bounds[-1]].reshape(-1, self.width))


def _source_files(source: Path) -> tuple[list[Path], Path]:
    if source.is_dir() and any(source.glob("*.parquet")):
        return sorted(source.glob("*.parquet")), source / CONFIG_NAME
    if not source.is_file():
        raise TeacherStoreError(f"{source} is neither a parquet file nor a folder of them")
    return [source], source.parent / CONFIG_NAME


def _columns(path: Path, c: Compression) -> tuple[_ByteRows, _ByteRows, list[list[int]]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    missing = [name for name in COLUMNS if name not in table.column_names]
    if missing:
        raise TeacherStoreError(
            f"{path}: no field(s) {missing}; DistillKit's sample-logits writes {list(COLUMNS)} "
            f"(found {table.column_names}; the legacy packed_indices/exact_values/coeffs and raw "
            "token_ids/top_values layouts are not read)"
        )
    return (
        _ByteRows(table, "compressed_logprobs", c.logprob_bytes(), str(path)),
        _ByteRows(table, "bytepacked_indices", c.index_bytes(), str(path)),
        table.column("input_ids").to_pylist(),
    )


def distillkit_records(
    source: str | Path, examples: list[Encoded], metadata: StoreMetadata
) -> dict[str, dict[str, Any]]:
    """Per example id ``{"example_id", "teacher_ids" [n][k], "teacher_probs" [n][k]}`` over
    its response positions, ordered by decoded log-probability (the store's descending order),
    from a DistillKit ``sample-logits`` folder or one of its parquet files."""
    files, config_path = _source_files(Path(source))
    c = read_compression(config_path, metadata)
    tables, exact, longer = [_columns(f, c) for f in files], {}, {}
    for i, (_, _, input_ids) in enumerate(tables):
        for r, ids in enumerate(input_ids):
            exact.setdefault(tuple(ids), (i, r))
            longer.setdefault(tuple(ids[:-1]), (i, r))
    records, used = {}, set()
    for ex in examples:
        found = exact.get(tuple(ex.input_ids)) or longer.get(tuple(ex.input_ids))
        if found is None:
            raise TeacherStoreError(
                f"{source}: no row's input_ids are the data's tokens of example {ex.example_id!r} "
                "(nor those plus one trailing pad token); the logits were captured from another "
                "tokenisation, template or max length"
            )
        used.add(found)
        logprob_bytes, index_bytes, _ = tables[found[0]]
        rows = (logprob_bytes.rows(found[1]), index_bytes.rows(found[1]))
        records[ex.example_id] = _record(rows, ex, c, metadata, f"{files[found[0]]} row {found[1]}")
    if unused := sum(len(t[2]) for t in tables) - len(used):
        print(f"{source}: {unused} DistillKit row(s) match no example of this split; not imported")
    return records


def _record(
    rows: tuple[torch.Tensor, torch.Tensor],
    ex: Encoded,
    c: Compression,
    meta: StoreMetadata,
    where: str,
) -> dict[str, Any]:
    """Decode the rows of ``ex``'s response positions, check them, and keep the top ``meta.k``."""
    logprob_bytes, index_bytes = rows
    positions = response_positions(ex.labels)
    needed = positions[-1] + 1 if positions else 0
    if len(logprob_bytes) != len(index_bytes) or len(logprob_bytes) < needed:
        raise TeacherStoreError(
            f"{where}: compressed_logprobs has {len(logprob_bytes)} and bytepacked_indices "
            f"{len(index_bytes)} positions; example {ex.example_id!r} needs {needed} of each"
        )
    logprobs = decode_logprobs(logprob_bytes[positions], c).double()
    ids = unpack_bits(index_bytes[positions], c.index_bits, c.k)
    if not torch.isfinite(logprobs).all():
        raise TeacherStoreError(f"{where}: compressed_logprobs decodes to non-finite values")
    if ids.numel() and int(ids.max()) >= meta.vocab_size:
        raise TeacherStoreError(
            f"{where}: bytepacked_indices holds token id {int(ids.max())}, outside the student "
            f"tokenizer's {meta.vocab_size} tokens"
        )
    order = torch.argsort(logprobs, dim=-1, descending=True, stable=True)[:, : meta.k]
    return {
        "example_id": ex.example_id,
        "teacher_ids": ids.gather(-1, order).tolist(),
        "teacher_probs": logprobs.gather(-1, order).exp().tolist(),
    }
