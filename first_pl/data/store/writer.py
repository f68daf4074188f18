"""The crash-safe writer of a teacher store: append whole examples, resume after a kill.

It writes ``<path>.partial`` (gold as plain token ids, chunked and resizable so batches append)
and, on :meth:`TeacherStoreWriter.finalize`, publishes the compact final file
(`first_pl.data.store.publish`) and renames it onto ``<path>``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from first_pl.data.store.append_checks import checked_batch, encode_example_ids
from first_pl.data.store.format import (
    CHUNK_CHECKSUM,
    COMPRESSIONS,
    DEFAULT_COMPRESSION,
    EXAMPLE_CHUNK,
    FORMAT_VERSION,
    PROVENANCE_ATTRS,
    SMALL_FILTERS,
    StoreMetadata,
    StoreMismatchError,
    TeacherStoreError,
    library_versions,
    partial_path,
    plain,
)
from first_pl.data.store.publish import publish
from first_pl.fileio.lock import FileLock, LockHeldError, lock_path

_WIDENING = "example_ids_widening"  # a wider copy of example_ids while the writer replaces it


def _create_example_ids(file: h5py.File, name: str, width: int, size: int = 0) -> h5py.Dataset:
    return file.create_dataset(
        name,
        (size,),
        np.dtype(f"S{width}"),
        maxshape=(None,),
        chunks=(EXAMPLE_CHUNK,),
        **SMALL_FILTERS,
    )


def _concat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(a) for a in arrays])


class TeacherStoreWriter:
    """Appends examples to ``<path>.partial`` and publishes ``<path>`` on :meth:`finalize`.

    Use as a context manager: a clean exit finalizes, an exception leaves the partial file
    (every committed example kept) for a later writer to resume from ``num_done``.

    ``id_length`` is the UTF-8 byte length of the longest example id that will be written
    (:func:`example_id_length`): ``example_ids`` is created that wide and a longer id is refused.
    Without it the width follows the longest id written so far (the dataset is rewritten wider
    when a longer one comes, which costs a copy of the ids).

    ``compression`` of ``ids`` and ``probs`` in the published file: ``"gzip"`` (the default,
    which ``None`` also means: real top-k rows shrink to about half, the price is slower random
    reads) or ``"none"``. The partial file is always uncompressed, so appends stay cheap.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        metadata: StoreMetadata,
        *,
        compression: str | None = None,
        chunk_rows: int = 4096,
        overwrite: bool = False,
        id_length: int | None = None,
        provenance: Mapping[str, str] | None = None,
    ) -> None:
        compression = compression or DEFAULT_COMPRESSION
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        if id_length is not None and id_length < 1:
            raise ValueError(f"id_length must be >= 1, got {id_length}")
        unknown = sorted(set(provenance or {}) - set(PROVENANCE_ATTRS))
        if unknown:
            raise ValueError(f"provenance keys must be among {PROVENANCE_ATTRS}, got {unknown}")
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.metadata = metadata
        self.compression = compression
        self.chunk_rows = chunk_rows
        self.overwrite = overwrite
        self.id_length = id_length
        self.provenance = dict(provenance or {})
        self._lock = FileLock(lock_path(self.path))
        self._file: h5py.File | None = None
        self._ids_done: list[str] = []
        self._seen: set[str] = set()
        self.finalized = False

    def __enter__(self) -> TeacherStoreWriter:
        return self.open()

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None and not self.finalized:
            self.finalize()
        else:
            self.close()

    def open(self) -> TeacherStoreWriter:
        """Take the lock, then resume the partial file if there is one, else start a new one."""
        try:
            self._lock.acquire()
        except LockHeldError as err:
            raise TeacherStoreError(
                f"{self.path} is being written by another process (lock {err.path} is held); "
                "wait for it to finish or stop it first"
            ) from None
        try:
            if self.path.exists() and not self.overwrite:
                raise TeacherStoreError(
                    f"{self.path} already exists as a complete store; pass overwrite=True to replace it"
                )
            if self.partial.exists():
                self._resume()
            else:
                self._create()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Close without finalizing: committed examples stay in the partial file."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._lock.release()

    @property
    def num_done(self) -> int:
        """Examples already committed: a resuming caller skips this many."""
        return len(self._ids_done)

    @property
    def example_ids_done(self) -> list[str]:
        """Ids of the committed examples, in order (lets a caller check its data order)."""
        return list(self._ids_done)

    def _create(self) -> None:
        meta = self.metadata
        f = h5py.File(self.partial, "w")
        self._file = f
        chunk = self.chunk_rows
        _create_example_ids(f, "example_ids", self.id_length or 1)
        f.create_dataset(
            "offsets",
            data=np.zeros(1, np.int64),
            maxshape=(None,),
            chunks=(EXAMPLE_CHUNK,),
            **SMALL_FILTERS,
        )
        ids_dtype = meta.ids_dtype
        shape, maxshape, chunks = (0, meta.k), (None, meta.k), (chunk, meta.k)
        rows = {"maxshape": maxshape, "chunks": chunks, **CHUNK_CHECKSUM}
        f.create_dataset("ids", shape, ids_dtype, **rows)
        f.create_dataset("probs", shape, meta.probs_dtype, **rows)
        f.create_dataset("gold", (0,), ids_dtype, maxshape=(None,), chunks=(chunk,), **CHUNK_CHECKSUM)
        f.attrs.update(meta.attrs())
        f.attrs.update(self.provenance)
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["ids_dtype"] = ids_dtype.name
        f.attrs["compression"] = self.compression
        for name, version in library_versions().items():
            f.attrs[f"version_{name}"] = version
        f.attrs["created"] = datetime.now(timezone.utc).isoformat()
        f.attrs["complete"] = False
        f.attrs["committed_examples"] = 0
        f.flush()

    def _resume(self) -> None:
        try:
            f = h5py.File(self.partial, "r+")
        except OSError as err:
            raise TeacherStoreError(
                f"cannot reopen the partial store {self.partial} to resume ({err}); delete it to start over"
            ) from err
        self._file = f
        version = plain(f.attrs.get("format_version"))
        if version != FORMAT_VERSION:
            raise TeacherStoreError(
                f"cannot resume {self.partial}: it has store format version {version}, this "
                f"writer writes version {FORMAT_VERSION}; delete the partial file to start over"
            )
        # one store, one origin: the metadata and the source its rows are read from
        found = {**dataclasses.asdict(StoreMetadata.from_attrs(f.attrs)),
                 **{key: plain(f.attrs.get(key)) for key in PROVENANCE_ATTRS}}  # fmt: skip
        wanted = {**dataclasses.asdict(self.metadata),
                  **{key: self.provenance.get(key) for key in PROVENANCE_ATTRS}}  # fmt: skip
        for name, want in wanted.items():
            if want != found[name]:
                raise StoreMismatchError(
                    name,
                    f"cannot resume {self.partial}: its {name} is {found[name]!r} but this run has "
                    f"{want!r}; delete the partial file or use another path",
                )
        self._truncate_to_committed()

    def _truncate_to_committed(self) -> None:
        """Drop rows written after the last commit (a kill mid-batch leaves them half-written)."""
        f = self._require_open()
        if _WIDENING in f:  # killed while widening example_ids: finish or undo it
            if "example_ids" in f:
                del f[_WIDENING]
            else:
                f.move(_WIDENING, "example_ids")
        n = int(f.attrs["committed_examples"])
        rows = int(f["offsets"][n])
        f["example_ids"].resize((n,))
        f["offsets"].resize((n + 1,))
        for name in ("ids", "probs", "gold"):
            f[name].resize(rows, axis=0)
        f.flush()
        self._ids_done = [s.decode() for s in f["example_ids"][:]]
        self._seen = set(self._ids_done)

    def _require_open(self) -> h5py.File:
        if self._file is None:
            raise RuntimeError("the writer is not open: use it as a context manager or call open()")
        return self._file

    def append(
        self,
        example_ids: Sequence[str],
        ids: np.ndarray | Sequence[np.ndarray],
        probs: np.ndarray | Sequence[np.ndarray],
        gold: np.ndarray | Sequence[np.ndarray],
        counts: Sequence[int] | None = None,
    ) -> None:
        """Commit a batch of whole examples.

        Either pass per-example arrays (``ids[i]`` is ``[n_i, k]``) and no ``counts``, or flat
        arrays over the batch (``ids`` is ``[sum n_i, k]``) with ``counts[i] = n_i``.
        """
        f = self._require_open()
        if not example_ids:
            return
        if counts is None:
            counts = [len(g) for g in gold]
            ids, probs, gold = (_concat(a) for a in (ids, probs, gold))
        ids_arr, probs_arr, gold_arr = checked_batch(
            self.metadata, self._seen, example_ids, ids, probs, gold, counts
        )
        names = encode_example_ids(example_ids, self.id_length, self.path)
        if names.dtype.itemsize > f["example_ids"].dtype.itemsize:
            self._widen_example_ids(names.dtype.itemsize)
        n_old, rows_old = self.num_done, int(f["offsets"][self.num_done])
        n_new, rows_new = n_old + len(example_ids), rows_old + len(gold_arr)
        for name, values in (("ids", ids_arr), ("probs", probs_arr), ("gold", gold_arr)):
            f[name].resize(rows_new, axis=0)
            f[name][rows_old:rows_new] = values
        f["example_ids"].resize((n_new,))
        f["example_ids"][n_old:n_new] = names
        f["offsets"].resize((n_new + 1,))
        f["offsets"][n_old + 1 :] = rows_old + np.cumsum(np.asarray(counts, np.int64))
        f.flush()
        f.attrs["committed_examples"] = n_new  # the commit point: rows above are on disk
        f.flush()
        self._ids_done.extend(example_ids)
        self._seen.update(example_ids)

    def _widen_example_ids(self, width: int) -> None:
        """Replace ``example_ids`` by a copy ``width`` bytes wide (ids are small: a cheap copy).

        The copy is complete and flushed before the old dataset is unlinked, so a kill at any
        point leaves one whole dataset for :meth:`_truncate_to_committed` to keep.
        """
        f = self._require_open()
        if _WIDENING in f:
            del f[_WIDENING]
        old = f["example_ids"][: self.num_done]
        _create_example_ids(f, _WIDENING, width, len(old))[:] = old
        f.flush()
        del f["example_ids"]
        f.move(_WIDENING, "example_ids")
        f.flush()

    def finalize(self) -> Path:
        """Publish the compact, checksummed final file at the path, then drop the partial one.

        A kill before the final rename leaves the partial file whole (a rerun resumes with
        nothing left to append and publishes again); after it, the store is complete.
        """
        f = self._require_open()
        f.flush()
        f.close()
        self._file = None
        try:
            publish(self.partial, self.path, self.compression, self.chunk_rows)
            self.partial.unlink()
            self.finalized = True
        finally:
            self.close()
        return self.path
