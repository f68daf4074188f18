"""Publish a finished partial store as the compact final file (format 3).

The partial file is built for appending: resizable chunked datasets, gold as plain token ids,
and the free space HDF5 leaves behind each resize. The published file is built for reading
and for its size on disk: the gold column packed as ranks (`pack_gold`: 1 byte a position
instead of 2-4), ``ids`` / ``probs`` gzip-compressed by default, every dataset in as few chunks
as its size needs, each chunk with a Fletcher-32 checksum that HDF5 checks when it reads the
chunk, HDF5's 1.10 file format (a single-chunk dataset needs no chunk index). It is written
under a temporary name, checksummed (a sha256 of each dataset's values: the store's identity,
checked by `first-pl verify-store` and before an export), marked complete and renamed onto the
final path, so a reader never sees half of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py

from first_pl.data.store.format import (
    BLOCK_ROWS,
    CHUNK_CHECKSUM,
    EXAMPLE_CHUNK,
    FORMAT_VERSION,
    SMALL_FILTERS,
    checksums,
    pack_gold,
    rank_dtype_for,
)
from first_pl.fileio.atomic import atomic_write

LIBVER = ("v110", "latest")  # readable by HDF5 >= 1.10 (2017), h5py >= 2.8


def _layout(shape: tuple[int, ...], cap: int, filters: dict[str, Any]) -> dict[str, Any]:
    """Chunks of at most ``cap`` rows with ``filters`` and a Fletcher-32 checksum each; an empty
    dataset is contiguous (HDF5 refuses a chunk larger than a fixed shape)."""
    if shape[0] == 0:
        return {}
    return {"chunks": (min(shape[0], cap), *shape[1:]), **filters, **CHUNK_CHECKSUM}


def _copy(src: h5py.Dataset, dst: h5py.Dataset, rows: int) -> None:
    for start in range(0, rows, BLOCK_ROWS):
        stop = min(rows, start + BLOCK_ROWS)
        dst[start:stop] = src[start:stop]


def publish(partial: Path, path: Path, compression: str, chunk_rows: int) -> None:
    """Write the final store at ``path`` from the committed examples of ``partial``."""

    def write(tmp: Path) -> None:
        with h5py.File(partial, "r") as src, h5py.File(tmp, "w", libver=LIBVER) as dst:
            _write(src, dst, compression, chunk_rows)
            for name, digest in checksums(dst).items():
                dst.attrs[f"sha256_{name}"] = digest
            dst.attrs["complete"] = True

    atomic_write(path, write)


def _write(src: h5py.File, dst: h5py.File, compression: str, chunk_rows: int) -> None:
    n = int(src.attrs["committed_examples"])
    rows = int(src["offsets"][n])
    k = src["ids"].shape[1]
    for name, size in (("example_ids", n), ("offsets", n + 1)):
        data = src[name][:size]
        dst.create_dataset(name, data=data, **_layout(data.shape, EXAMPLE_CHUNK, SMALL_FILTERS))
    filters = {"compression": "gzip"} if compression == "gzip" else {}
    for name in ("ids", "probs"):
        layout = _layout((rows, k), chunk_rows, filters)
        _copy(src[name], dst.create_dataset(name, (rows, k), src[name].dtype, **layout), rows)
    rank = dst.create_dataset(
        "gold_rank", (rows,), rank_dtype_for(k), **_layout((rows,), 1 << 20, SMALL_FILTERS)
    )
    n_missing = 0
    missing = dst.create_dataset(
        "gold_missing",
        (0,),
        src["gold"].dtype,
        maxshape=(None,),
        chunks=(BLOCK_ROWS,),
        **SMALL_FILTERS,
    )
    for start in range(0, rows, BLOCK_ROWS):
        stop = min(rows, start + BLOCK_ROWS)
        block_rank, block_missing = pack_gold(src["ids"][start:stop], src["gold"][start:stop])
        rank[start:stop] = block_rank
        missing.resize((n_missing + len(block_missing),))
        missing[n_missing:] = block_missing
        n_missing += len(block_missing)
    for key, value in src.attrs.items():
        if not key.startswith("sha256_"):
            dst.attrs[key] = value
    dst.attrs["format_version"] = FORMAT_VERSION
    dst.attrs["committed_examples"] = n
