"""What a teacher store is made of: versions, metadata, dtypes, checksums, the packed gold column.

docs/STORE_FORMAT.md is the specification; this module holds its constants and the small
functions every reader and writer shares.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

# 3: gold packed as its rank in the row's top-k (+ the ids of gold tokens outside the top-k);
# 2: gold as a token id per position; 1: also variable-length example ids.
FORMAT_VERSION = 3
READABLE_FORMAT_VERSIONS = (1, 2, 3)
DATASETS = ("example_ids", "offsets", "ids", "probs", "gold_rank", "gold_missing")
UNPACKED_DATASETS = ("example_ids", "offsets", "ids", "probs", "gold")  # formats 1-2, partials
PROBS_DTYPES = ("float16", "float32")
COMPRESSIONS = ("gzip", "none")  # of ids and probs in a published store
DEFAULT_COMPRESSION = "gzip"
LIBRARIES = ("torch", "transformers", "h5py", "first_pl")
BLOCK_ROWS = 1 << 16  # rows read at a time when hashing or scanning, so memory stays bounded
EXAMPLE_CHUNK = 4096  # examples per chunk of example_ids and offsets
# HDF5's per-chunk Fletcher-32 checksum: a damaged chunk fails the read that touches it, so a
# store is checked as it is used, at no extra pass (the whole-store sha256 is for `verify-store`).
CHUNK_CHECKSUM: dict[str, Any] = {"fletcher32": True}
SMALL_FILTERS: dict[str, Any] = {"compression": "gzip", "shuffle": True, **CHUNK_CHECKSUM}
# float16 rounding of k probabilities that truly sum to <= 1 stays below this
PROBS_SUM_TOLERANCE = 2e-3
# Root attributes that say where the rows came from beyond `StoreMetadata` (an import's source
# file): written on the partial and the published store, and a resume must match them.
PROVENANCE_ATTRS = ("import_source",)


class TeacherStoreError(ValueError):
    """A teacher store is missing, incomplete, corrupt, or does not match what the caller expects."""


class StoreMismatchError(TeacherStoreError):
    """The store differs from the caller's expectation in one named ``field``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class StoreMetadata:
    """What a store was made from: two stores with equal metadata are interchangeable.

    A resumed writer must match the partial file on every one of these fields, and a
    consumer validates the fields it cares about with :meth:`TeacherStore.validate_against`.

    ``max_length`` is the data's prompt + response token budget: a prompt longer than it loses
    tokens from the middle of its question, so the teacher saw other inputs at another ``max_length`` although
    the examples, positions and gold tokens agree. None: a store written before it was
    recorded (read as before; its ``max_length`` cannot be checked).
    """

    k: int
    vocab_size: int
    tokenizer_fingerprint: str
    teacher: str
    task: str
    split: str
    template_fingerprint: str
    probs_dtype: str = "float16"
    max_length: int | None = None

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {self.vocab_size}")
        if self.probs_dtype not in PROBS_DTYPES:
            raise ValueError(f"probs_dtype must be one of {PROBS_DTYPES}, got {self.probs_dtype!r}")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}")

    @property
    def ids_dtype(self) -> np.dtype:
        return ids_dtype_for(self.vocab_size)

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> StoreMetadata:
        """The metadata of a store's root attributes; fields recorded only by later versions
        (``OPTIONAL_FIELDS``) keep their defaults when absent."""
        values = {
            f.name: attrs[f.name]
            for f in dataclasses.fields(cls)
            if f.name not in OPTIONAL_FIELDS or f.name in attrs
        }
        return cls(**{name: plain(value) for name, value in values.items()})

    def attrs(self) -> dict[str, Any]:
        """The fields as HDF5 attributes: an unknown optional field (None) is left out."""
        return {
            name: value for name, value in dataclasses.asdict(self).items() if value is not None
        }


# fields that stores written by earlier versions of first_pl do not have
OPTIONAL_FIELDS = ("max_length",)


def ids_dtype_for(vocab_size: int) -> np.dtype:
    """Smallest unsigned integer dtype that holds every token id ``0 .. vocab_size - 1``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"vocab_size {vocab_size} does not fit in uint32")


def rank_dtype_for(k: int) -> np.dtype:
    """dtype of ``gold_rank``: it holds 0 .. k (k meaning "not among the top-k")."""
    return ids_dtype_for(k + 1)


def example_id_length(example_ids: Iterable[str]) -> int:
    """Bytes of the longest id in UTF-8 (at least 1): the ``id_length`` for a writer of them."""
    return max((len(example_id.encode("utf-8")) for example_id in example_ids), default=1) or 1


def partial_path(path: str | os.PathLike) -> Path:
    """Where a store lives while it is being written."""
    return Path(f"{os.fspath(path)}.partial")


def plain(value: Any) -> Any:
    """h5py returns numpy scalars and bytes; compare and report plain Python values."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def iter_blocks(dataset: h5py.Dataset, rows: int = BLOCK_ROWS) -> Iterator[np.ndarray]:
    for start in range(0, dataset.shape[0], rows):
        yield dataset[start : start + rows]


def dataset_checksum(dataset: h5py.Dataset) -> str:
    """sha256 of a dataset's values (not its file bytes, which depend on chunk layout).

    Strings are hashed one by one with their length, whatever their storage (variable length in
    format 1, ``S{n}`` padded to any width later), so equal ids give equal checksums.
    """
    digest = hashlib.sha256()
    for block in iter_blocks(dataset):
        if dataset.dtype.kind in ("O", "S"):
            for item in block:
                data = item if isinstance(item, bytes) else str(item).encode()
                digest.update(len(data).to_bytes(8, "little") + data)
        else:
            digest.update(np.ascontiguousarray(block).tobytes())
    return digest.hexdigest()


def dataset_names(file: h5py.File) -> tuple[str, ...]:
    """The datasets a complete store of this file's layout holds (packed gold or not)."""
    return DATASETS if "gold_rank" in file else UNPACKED_DATASETS


def checksums(file: h5py.File) -> dict[str, str]:
    return {name: dataset_checksum(file[name]) for name in dataset_names(file)}


def pack_gold(ids: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(rank [n], missing [m])``: the gold token's column in its row's top-k, or k when it is
    not there, and the ids of those m absent gold tokens in row order.

    The rank is what `calibrate` needs (is the top-1 right; where is the gold token) and takes
    one byte; the ids of absent tokens keep the column lossless (`unpack_gold`).
    """
    k = ids.shape[1]
    match = ids == gold[:, None]
    found = match.any(1)
    rank = np.where(found, match.argmax(1), k).astype(rank_dtype_for(k))
    return rank, gold[~found]


def unpack_gold(ids: np.ndarray, rank: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """The gold token ids ``[n]`` back from `pack_gold`'s rank and missing ids."""
    k = ids.shape[1]
    rank = rank.astype(np.int64)
    gold = ids[np.arange(len(rank)), np.minimum(rank, k - 1)]
    absent = rank == k
    if int(absent.sum()) != len(missing):
        raise TeacherStoreError(
            f"gold_rank marks {int(absent.sum())} positions outside the top-k but gold_missing "
            f"holds {len(missing)} ids"
        )
    gold[absent] = missing
    return gold
