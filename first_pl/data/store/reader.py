"""Read-only access to a complete teacher store, of any readable format version.

Format 3 keeps the gold column packed (`pack_gold`); the reader unpacks it per slice, so every
caller still gets ``(ids, probs, gold)`` rows. A per-example count of the gold tokens outside the
top-k (computed once at open, ``N + 1`` integers) makes one example's slice a direct read.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from first_pl.data.store.format import (
    BLOCK_ROWS,
    READABLE_FORMAT_VERSIONS,
    StoreMetadata,
    StoreMismatchError,
    TeacherStoreError,
    checksums,
    partial_path,
    plain,
    unpack_gold,
)

Rows = tuple[np.ndarray, np.ndarray, np.ndarray]


class TeacherStore:
    """Read-only access to a complete store.

    The HDF5 handle is opened lazily and reopened in a new process (h5py handles must not cross
    a fork), so the object can be pickled into dataloader workers.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._memory: dict[str, np.ndarray] | None = None
        self._check_openable()
        try:
            self.attrs = {key: plain(value) for key, value in self._h5.attrs.items()}
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
            self.packed = "gold_rank" in self._h5
            self._check_layout()
            self.example_ids: list[str] = [s.decode() for s in self._read("example_ids")]
            self.offsets: np.ndarray = self._read("offsets")
            self._missing_before = self._count_missing() if self.packed else None
        except (OSError, KeyError) as err:
            raise TeacherStoreError(
                f"{self.path} is truncated or not a teacher store ({err})"
            ) from err
        self._index = {example_id: i for i, example_id in enumerate(self.example_ids)}

    def _check_layout(self) -> None:
        """Refuse a file without every dataset of a store's layout (those it recorded checksums
        of at finalize, else those its layout reads) by name, before a read of one fails as
        h5py's "object 'gold' doesn't exist"."""
        held = set(self._h5.keys())
        recorded = {key.removeprefix("sha256_") for key in self.attrs if key.startswith("sha256_")}
        absent = sorted(({"example_ids", "offsets"} | (recorded or set(self.row_datasets))) - held)
        if absent:
            raise TeacherStoreError(
                f"{self.path} lacks the dataset(s) {absent} of a teacher store (it holds "
                f"{sorted(held)}); extract or import the store again"
            )

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
        """Recompute each dataset's sha256 and compare with the one stored at finalize.

        A full read of the store, so not done at open: HDF5 checks each chunk's Fletcher-32 as
        a read touches it (`_read`); `first-pl verify-store` and an export run this.
        """
        try:
            actual = checksums(self._h5)
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

    def _read(self, name: str, rows: slice = slice(None)) -> np.ndarray:
        """``name[rows]``, from memory after `load_all`, else from the file, where HDF5 checks the
        Fletcher-32 of every chunk it reads (stores written before it are read unchecked)."""
        if self._memory is not None and name in self._memory:
            return self._memory[name][rows]
        try:
            return self._h5[name][rows]
        except OSError as err:
            where = f"rows {rows.start or 0}..{rows.stop} of " if rows.stop is not None else ""
            raise TeacherStoreError(
                f"{self.path} is corrupt: reading {where}dataset '{name}' failed its chunk "
                f"checksum or decompression ({err}); extract or import the store again"
            ) from err

    def _count_missing(self) -> np.ndarray:
        """``[N + 1]``: gold tokens outside the top-k before each example's first row."""
        k = self.metadata.k
        before = np.zeros(len(self.offsets), np.int64)
        running = 0
        for start in range(0, self.num_positions, BLOCK_ROWS):
            rank = self._read("gold_rank", slice(start, start + BLOCK_ROWS))
            cumulative = running + np.cumsum(rank == k)
            stop = start + len(cumulative)
            lo, hi = np.searchsorted(self.offsets, [start, stop], side="right")
            before[lo:hi] = cumulative[self.offsets[lo:hi] - start - 1]
            running = int(cumulative[-1])
        return before

    def _rows(self, start: int, stop: int, missing: slice) -> Rows:
        rows = slice(start, stop)
        ids, probs = self._read("ids", rows), self._read("probs", rows)
        if not self.packed:
            return ids, probs, self._read("gold", rows)
        rank, absent = self._read("gold_rank", rows), self._read("gold_missing", missing)
        return ids, probs, unpack_gold(ids, rank, absent)

    @property
    def row_datasets(self) -> tuple[str, ...]:
        """The per-position datasets of this store's layout."""
        return (
            ("ids", "probs", "gold_rank", "gold_missing")
            if self.packed
            else ("ids", "probs", "gold")
        )

    def positions(self, i: int) -> Rows:
        """``(ids [n, k], probs [n, k], gold [n])`` for the response positions of example ``i``."""
        start, stop = int(self.offsets[i]), int(self.offsets[i + 1])
        before = self._missing_before
        missing = slice(int(before[i]), int(before[i + 1])) if before is not None else slice(0)
        return self._rows(start, stop, missing)

    def load_all(self) -> TeacherStore:
        """Hold the per-position data in memory: fastest when the store fits (no small reads)."""
        self._memory = {name: self._read(name) for name in self.row_datasets}
        return self

    def iter_blocks(self, rows: int = BLOCK_ROWS) -> Iterator[Rows]:
        """Stream ``(ids, probs, gold)`` over all positions in bounded memory."""
        used = 0
        for start in range(0, self.num_positions, rows):
            stop = min(start + rows, self.num_positions)
            absent = 0
            if self.packed:
                absent = int((self._read("gold_rank", slice(start, stop)) == self.metadata.k).sum())
            yield self._rows(start, stop, slice(used, used + absent))
            used += absent

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
