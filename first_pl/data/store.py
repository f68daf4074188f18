"""The HDF5 teacher store: the teacher's top-k next-token distribution at every response position.

Layout (flat, no padding waste; P = total response positions, N = examples):

- ``example_ids``: fixed-length UTF-8 bytes ``[N]`` (numpy ``S{n}``, ``n`` = the longest id)
- ``offsets``: int64 ``[N + 1]``; example ``i`` owns rows ``offsets[i]:offsets[i + 1]``
- ``ids``: ``[P, k]`` top-k token ids, the smallest unsigned int dtype that holds the vocab
- ``probs``: ``[P, k]`` their full-vocab softmax probabilities (float16 or float32), descending
- ``gold``: ``[P]`` the gold token at each response position (same dtype as ``ids``)

The two per-example datasets are always gzip + shuffle compressed (``compression`` applies to
``ids``/``probs``/``gold`` only): the ids share long prefixes and the offsets grow slowly, so they
shrink to a few bytes per example, and readers load both into memory once. Format version 1
(``example_ids`` as variable-length strings, about 57 B per example in the HDF5 global heap,
uncompressed offsets) is still read; a partial file of it cannot be resumed.

Attributes identify what the store was made from (see :class:`StoreMetadata`), record library
versions and the creation time, and carry a sha256 checksum of every dataset. A store is usable
only once ``complete`` is set, which :meth:`TeacherStoreWriter.finalize` does last, just before it
atomically renames ``<path>.partial`` to ``<path>``.

The writer is crash-safe: it commits whole examples only (``committed_examples`` is written after
the rows are flushed), so after a kill it reopens the ``.partial`` file, truncates rows past the
last committed example and tells the caller how many examples to skip (``num_done``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.metadata
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (1, 2)  # 1: variable-length example_ids, uncompressed offsets
DATASETS = ("example_ids", "offsets", "ids", "probs", "gold")
PROBS_DTYPES = ("float16", "float32")
LIBRARIES = ("torch", "transformers", "h5py", "first_pl")
_BLOCK_ROWS = 1 << 16  # rows read at a time when hashing or scanning, so memory stays bounded
_EXAMPLE_CHUNK = 4096  # examples per chunk of example_ids and offsets
_EXAMPLE_FILTERS: dict[str, Any] = {"compression": "gzip", "shuffle": True}
_WIDENING = "example_ids_widening"  # a wider copy of example_ids while the writer replaces it


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
    """

    k: int
    vocab_size: int
    tokenizer_fingerprint: str
    teacher: str
    task: str
    split: str
    template_fingerprint: str
    probs_dtype: str = "float16"

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {self.vocab_size}")
        if self.probs_dtype not in PROBS_DTYPES:
            raise ValueError(f"probs_dtype must be one of {PROBS_DTYPES}, got {self.probs_dtype!r}")

    @property
    def ids_dtype(self) -> np.dtype:
        return ids_dtype_for(self.vocab_size)

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> StoreMetadata:
        values = {f.name: attrs[f.name] for f in dataclasses.fields(cls)}
        return cls(**{name: _plain(value) for name, value in values.items()})


def ids_dtype_for(vocab_size: int) -> np.dtype:
    """Smallest unsigned integer dtype that holds every token id ``0 .. vocab_size - 1``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"vocab_size {vocab_size} does not fit in uint32")


def example_id_length(example_ids: Iterable[str]) -> int:
    """Bytes of the longest id in UTF-8 (at least 1): the ``id_length`` for a writer of them."""
    return max((len(example_id.encode("utf-8")) for example_id in example_ids), default=1) or 1


def _create_example_ids(file: h5py.File, name: str, width: int, size: int = 0) -> h5py.Dataset:
    return file.create_dataset(
        name,
        (size,),
        np.dtype(f"S{width}"),
        maxshape=(None,),
        chunks=(_EXAMPLE_CHUNK,),
        **_EXAMPLE_FILTERS,
    )


def partial_path(path: str | os.PathLike) -> Path:
    """Where a store lives while it is being written."""
    return Path(f"{os.fspath(path)}.partial")


def _plain(value: Any) -> Any:
    """h5py returns numpy scalars and bytes; compare and report plain Python values."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def _iter_blocks(dataset: h5py.Dataset, rows: int = _BLOCK_ROWS) -> Iterator[np.ndarray]:
    for start in range(0, dataset.shape[0], rows):
        yield dataset[start : start + rows]


def _dataset_checksum(dataset: h5py.Dataset) -> str:
    """sha256 of a dataset's values (not its file bytes, which depend on chunk layout).

    Strings are hashed one by one with their length, whatever their storage (variable length in
    format 1, ``S{n}`` padded to any width in format 2), so equal ids give equal checksums.
    """
    digest = hashlib.sha256()
    for block in _iter_blocks(dataset):
        if dataset.dtype.kind in ("O", "S"):
            for item in block:
                data = item if isinstance(item, bytes) else str(item).encode()
                digest.update(len(data).to_bytes(8, "little") + data)
        else:
            digest.update(np.ascontiguousarray(block).tobytes())
    return digest.hexdigest()


def _checksums(file: h5py.File) -> dict[str, str]:
    return {name: _dataset_checksum(file[name]) for name in DATASETS}


class _FileLock:
    """Exclusive, non-blocking ``flock`` on ``<path>.lock``: a second writer fails at once.

    The lock file is removed on release; a process that locked a file already unlinked by the
    previous holder notices (inode mismatch) and retries on the fresh file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, what: str) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise TeacherStoreError(
                    f"{what} is being written by another process (lock {self.path} is held); "
                    "wait for it to finish or stop it first"
                ) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return
            os.close(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


class TeacherStoreWriter:
    """Appends examples to ``<path>.partial`` and publishes ``<path>`` on :meth:`finalize`.

    Use as a context manager: a clean exit finalizes, an exception leaves the partial file
    (every committed example kept) for a later writer to resume from ``num_done``.

    ``id_length`` is the UTF-8 byte length of the longest example id that will be written
    (:func:`example_id_length`): ``example_ids`` is created that wide and a longer id is refused.
    Without it the width follows the longest id written so far (the dataset is rewritten wider
    when a longer one comes, which costs a copy of the ids).
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
    ) -> None:
        if compression not in (None, "gzip"):
            raise ValueError(f"compression must be None or 'gzip', got {compression!r}")
        if id_length is not None and id_length < 1:
            raise ValueError(f"id_length must be >= 1, got {id_length}")
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.metadata = metadata
        self.compression = compression
        self.chunk_rows = chunk_rows
        self.overwrite = overwrite
        self.id_length = id_length
        self._lock = _FileLock(Path(f"{os.fspath(self.path)}.lock"))
        self._file: h5py.File | None = None
        self._ids_done: list[str] = []
        self._seen: set[str] = set()
        self.finalized = False

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> TeacherStoreWriter:
        return self.open()

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None and not self.finalized:
            self.finalize()
        else:
            self.close()

    def open(self) -> TeacherStoreWriter:
        """Take the lock, then resume the partial file if there is one, else start a new one."""
        self._lock.acquire(str(self.path))
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

    # -- creation and resume ---------------------------------------------------------------

    def _create(self) -> None:
        meta = self.metadata
        f = h5py.File(self.partial, "w")
        self._file = f
        chunk = self.chunk_rows
        opts: dict[str, Any] = {"compression": self.compression}
        _create_example_ids(f, "example_ids", self.id_length or 1)
        f.create_dataset(
            "offsets",
            data=np.zeros(1, np.int64),
            maxshape=(None,),
            chunks=(_EXAMPLE_CHUNK,),
            **_EXAMPLE_FILTERS,
        )
        ids_dtype = meta.ids_dtype
        shape, maxshape, chunks = (0, meta.k), (None, meta.k), (chunk, meta.k)
        f.create_dataset("ids", shape, ids_dtype, maxshape=maxshape, chunks=chunks, **opts)
        f.create_dataset("probs", shape, meta.probs_dtype, maxshape=maxshape, chunks=chunks, **opts)
        f.create_dataset("gold", (0,), ids_dtype, maxshape=(None,), chunks=(chunk,), **opts)
        f.attrs.update(dataclasses.asdict(meta))
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["ids_dtype"] = ids_dtype.name
        f.attrs["compression"] = self.compression or "none"
        for name, version in _library_versions().items():
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
        version = _plain(f.attrs.get("format_version"))
        if version != FORMAT_VERSION:
            raise TeacherStoreError(
                f"cannot resume {self.partial}: it has store format version {version}, this "
                f"writer writes version {FORMAT_VERSION}; delete the partial file to start over"
            )
        found = StoreMetadata.from_attrs(f.attrs)
        for field in dataclasses.fields(StoreMetadata):
            want, have = getattr(self.metadata, field.name), getattr(found, field.name)
            if want != have:
                raise StoreMismatchError(
                    field.name,
                    f"cannot resume {self.partial}: its {field.name} is {have!r} but this run has "
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

    # -- appending -------------------------------------------------------------------------

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
        ids_arr, probs_arr, gold_arr = self._checked(example_ids, ids, probs, gold, counts)
        names = self._encoded_ids(example_ids)
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

    def _encoded_ids(self, example_ids: Sequence[str]) -> np.ndarray:
        """The ids as UTF-8 ``S{longest}``; raises before anything is written if one cannot be
        stored (longer than ``id_length``, or with a NUL, which fixed-length bytes drop)."""
        encoded = []
        for example_id in example_ids:
            if not isinstance(example_id, str):
                raise TypeError(f"example ids must be str, got {type(example_id).__name__}")
            data = example_id.encode("utf-8")
            if b"\0" in data:
                raise ValueError(f"example id {example_id!r} contains a NUL character")
            if self.id_length is not None and len(data) > self.id_length:
                raise ValueError(
                    f"example id {example_id!r} is {len(data)} bytes in UTF-8, longer than "
                    f"id_length={self.id_length} of {self.path}; pass the longest id's length "
                    "(first_pl.data.store.example_id_length) to the writer"
                )
            encoded.append(data)
        return np.array(encoded, dtype=np.bytes_)

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

    def _checked(
        self,
        example_ids: Sequence[str],
        ids: np.ndarray,
        probs: np.ndarray,
        gold: np.ndarray,
        counts: Sequence[int],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validate one batch before any byte of it is written, and cast to the store's dtypes."""
        meta = self.metadata
        if len(example_ids) != len(counts):
            raise ValueError(f"{len(example_ids)} example ids but {len(counts)} counts")
        if len(set(example_ids)) != len(example_ids) or self._seen.intersection(example_ids):
            raise ValueError("duplicate example id: each example may be written once")
        rows = int(sum(counts))
        ids, probs, gold = np.asarray(ids), np.asarray(probs), np.asarray(gold)
        if ids.shape != (rows, meta.k) or probs.shape != (rows, meta.k) or gold.shape != (rows,):
            raise ValueError(
                f"expected ids/probs [{rows}, {meta.k}] and gold [{rows}], got "
                f"{ids.shape}, {probs.shape}, {gold.shape}"
            )
        for name, values in (("ids", ids), ("gold", gold)):
            if values.size and (values.min() < 0 or values.max() >= meta.vocab_size):
                raise ValueError(
                    f"{name} outside [0, {meta.vocab_size}) for vocab_size {meta.vocab_size}"
                )
        return (
            ids.astype(meta.ids_dtype),
            probs.astype(meta.probs_dtype),
            gold.astype(meta.ids_dtype),
        )

    # -- publishing ------------------------------------------------------------------------

    def finalize(self) -> Path:
        """Checksum every dataset, mark complete, and atomically rename to the final path."""
        f = self._require_open()
        for name, digest in _checksums(f).items():
            f.attrs[f"sha256_{name}"] = digest
        f.attrs["complete"] = True
        f.flush()
        f.close()
        self._file = None
        os.replace(self.partial, self.path)
        self.finalized = True
        self.close()
        return self.path


def _concat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(a) for a in arrays])


class TeacherStore:
    """Read-only access to a complete store.

    The HDF5 handle is opened lazily and reopened in a new process (h5py handles must not cross
    a fork), so the object can be pickled into dataloader workers.
    """

    def __init__(self, path: str | os.PathLike, *, verify: bool = True) -> None:
        self.path = Path(path)
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._memory: dict[str, np.ndarray] | None = None
        self._check_openable()
        try:
            self.attrs = {key: _plain(value) for key, value in self._h5.attrs.items()}
            version = self.attrs.get("format_version")
            if version is not None and version not in READABLE_FORMAT_VERSIONS:
                raise TeacherStoreError(
                    f"{self.path} has store format version {version}; this first_pl reads "
                    f"versions {', '.join(map(str, READABLE_FORMAT_VERSIONS))} (upgrade first_pl "
                    "or extract the store again)"
                )
            if not self.attrs.get("complete", False):
                raise TeacherStoreError(
                    f"{self.path} is incomplete (its writer never finalized it); finish the extraction"
                )
            self.metadata = StoreMetadata.from_attrs(self.attrs)
            if verify:
                self.verify_checksums()
            self.example_ids: list[str] = [s.decode() for s in self._h5["example_ids"][:]]
            self.offsets: np.ndarray = self._h5["offsets"][:]
        except (OSError, KeyError) as err:
            raise TeacherStoreError(
                f"{self.path} is truncated or not a teacher store ({err})"
            ) from err
        self._index = {example_id: i for i, example_id in enumerate(self.example_ids)}

    def _check_openable(self) -> None:
        if self.path.name.endswith(".partial"):
            raise TeacherStoreError(
                f"{self.path} is a partial store still being written (or abandoned)"
            )
        if not self.path.exists():
            hint = " (a partial store exists: the extraction did not finish)"
            raise TeacherStoreError(
                f"teacher store {self.path} does not exist"
                + (hint if partial_path(self.path).exists() else "")
            )
        _ = self._h5

    @property
    def _h5(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as err:
                raise TeacherStoreError(
                    f"{self.path} is truncated or not a readable HDF5 file ({err})"
                ) from err
            self._pid = os.getpid()
        return self._file

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"], state["_pid"] = None, None
        return state

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def verify_checksums(self) -> None:
        """Recompute each dataset's sha256 and compare with the one stored at finalize."""
        try:
            actual = _checksums(self._h5)
        except (OSError, KeyError) as err:
            raise TeacherStoreError(f"{self.path} is truncated or unreadable ({err})") from err
        for name, digest in actual.items():
            if self.attrs.get(f"sha256_{name}") != digest:
                raise TeacherStoreError(
                    f"{self.path} is corrupt: the checksum of dataset '{name}' does not match"
                )

    # -- access ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.example_ids)

    @property
    def num_positions(self) -> int:
        return int(self.offsets[-1])

    def example_index(self, example_id: str) -> int:
        try:
            return self._index[example_id]
        except KeyError:
            raise KeyError(f"example id {example_id!r} is not in {self.path}") from None

    def _dataset(self, name: str) -> h5py.Dataset | np.ndarray:
        return self._memory[name] if self._memory is not None else self._h5[name]

    def positions(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ids [n, k], probs [n, k], gold [n])`` for the response positions of example ``i``."""
        start, stop = int(self.offsets[i]), int(self.offsets[i + 1])
        return tuple(self._dataset(name)[start:stop] for name in ("ids", "probs", "gold"))

    def load_all(self) -> TeacherStore:
        """Hold ids/probs/gold in memory: fastest when the store fits (random small reads vanish)."""
        self._memory = {name: self._h5[name][:] for name in ("ids", "probs", "gold")}
        return self

    def iter_blocks(
        self, rows: int = _BLOCK_ROWS
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Stream ``(ids, probs, gold)`` over all positions in bounded memory."""
        for start in range(0, self.num_positions, rows):
            stop = start + rows
            yield tuple(self._dataset(name)[start:stop] for name in ("ids", "probs", "gold"))

    # -- checks ----------------------------------------------------------------------------

    def validate_against(
        self,
        expected: StoreMetadata | Mapping[str, Any] | None = None,
        example_ids: Sequence[str] | None = None,
        positions_per_example: Sequence[int] | Mapping[str, int] | None = None,
        student_vocab_size: int | None = None,
    ) -> None:
        """Raise :class:`StoreMismatchError` at the first way this store does not fit the caller.

        ``expected`` checks metadata fields (a mapping checks only the fields it has);
        ``positions_per_example`` is aligned with ``example_ids`` or keyed by example id.
        """
        if expected is not None:
            self._validate_metadata(expected)
        if example_ids is not None:
            self._validate_examples(example_ids, positions_per_example)
        if student_vocab_size is not None:
            self._validate_vocab(student_vocab_size)

    def _validate_metadata(self, expected: StoreMetadata | Mapping[str, Any]) -> None:
        if isinstance(expected, StoreMetadata):
            expected = dataclasses.asdict(expected)
        for field, want in expected.items():
            if not hasattr(self.metadata, field):
                raise ValueError(f"unknown store metadata field {field!r}")
            have = getattr(self.metadata, field)
            if have != want:
                raise StoreMismatchError(
                    field, f"{self.path}: {field} is {have!r} but {want!r} was expected"
                )

    def _validate_examples(
        self,
        example_ids: Sequence[str],
        positions_per_example: Sequence[int] | Mapping[str, int] | None,
    ) -> None:
        missing = [e for e in example_ids if e not in self._index]
        if missing:
            raise StoreMismatchError(
                "example_ids",
                f"{self.path} lacks {len(missing)} example id(s), first {missing[0]!r}",
            )
        if positions_per_example is None:
            return
        if not isinstance(positions_per_example, Mapping):
            positions_per_example = dict(zip(example_ids, positions_per_example, strict=True))
        for example_id, want in positions_per_example.items():
            i = self.example_index(example_id)
            have = int(self.offsets[i + 1] - self.offsets[i])
            if have != want:
                raise StoreMismatchError(
                    "positions",
                    f"{self.path}: example {example_id!r} has {have} response positions in the "
                    f"store but {want} in the data (template or tokenisation changed?)",
                )

    def _validate_vocab(self, student_vocab_size: int) -> None:
        top = max((int(ids.max()) for ids, _, _ in self.iter_blocks() if ids.size), default=-1)
        if top >= student_vocab_size:
            raise StoreMismatchError(
                "vocab_size",
                f"{self.path}: teacher token id {top} is beyond the student's vocab "
                f"({student_vocab_size} tokens)",
            )

    def check_values(self, tol: float = 2e-3) -> None:
        """Raise if any probability is NaN, negative, or a row sums above ``1 + tol``.

        The default tolerance covers float16 rounding of k values that truly sum to <= 1.
        """
        row = 0
        for _, probs, _ in self.iter_blocks():
            probs = probs.astype(np.float32)
            problems = {
                "NaN": np.isnan(probs).any(axis=1),
                "negative": (probs < 0).any(axis=1),
                f"row sum > 1 + {tol}": probs.sum(axis=1) > 1 + tol,
            }
            for what, bad in problems.items():
                if bad.any():
                    first = row + int(np.argmax(bad))
                    raise TeacherStoreError(
                        f"{self.path}: {int(bad.sum())} position(s) with {what} probabilities, "
                        f"first at row {first}"
                    )
            row += len(probs)


def merge_shards(
    shard_paths: Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    example_order: Sequence[str] | None = None,
    *,
    overwrite: bool = False,
    compression: str | None = None,
    batch_examples: int = 1024,
) -> Path:
    """Concatenate complete rank shards (disjoint examples, equal metadata) into one store.

    ``example_order`` defaults to the shards' order one after another; with contiguous rank
    splits that is the single-process order, so N processes give the same data as one. The output
    is always in the current format, so merging one store of an older format upgrades it.
    """
    shards = [TeacherStore(p) for p in shard_paths]
    if not shards:
        raise ValueError("merge_shards needs at least one shard")
    metadata = shards[0].metadata
    for shard in shards[1:]:
        if shard.metadata != metadata:
            raise TeacherStoreError(
                f"{shard.path} was made with other metadata than {shards[0].path}"
            )
    where = {}
    for s, shard in enumerate(shards):
        for i, example_id in enumerate(shard.example_ids):
            if example_id in where:
                raise TeacherStoreError(f"example {example_id!r} is in more than one shard")
            where[example_id] = (s, i)
    order = list(example_order) if example_order is not None else list(where)
    missing = [e for e in order if e not in where]
    if missing or len(order) != len(where):
        raise TeacherStoreError(
            f"example_order does not cover the shards exactly (missing: {missing[:3]}, "
            f"{len(order)} ids for {len(where)} examples)"
        )
    writer = TeacherStoreWriter(
        out_path,
        metadata,
        compression=compression,
        overwrite=overwrite,
        id_length=example_id_length(order),
    )
    with writer as w:
        if w.example_ids_done != order[: w.num_done]:
            raise TeacherStoreError(f"the partial merge at {w.partial} was made in another order")
        for start in range(w.num_done, len(order), batch_examples):
            batch = order[start : start + batch_examples]
            ids, probs, gold = zip(
                *(shards[where[e][0]].positions(where[e][1]) for e in batch), strict=True
            )
            w.append(batch, ids, probs, gold)
    for shard in shards:
        shard.close()
    return Path(out_path)
