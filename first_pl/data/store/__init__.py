"""The HDF5 teacher store: the teacher's top-k next-token distribution at every response position.

Layout (flat, no padding waste; P = total response positions, N = examples; docs/STORE_FORMAT.md
is the full specification):

- ``example_ids``: fixed-length UTF-8 bytes ``[N]``; ``offsets``: int64 ``[N + 1]``, example
  ``i`` owns rows ``offsets[i]:offsets[i + 1]``
- ``ids``: ``[P, k]`` top-k token ids, the smallest unsigned int dtype that holds the vocab
- ``probs``: ``[P, k]`` their full-vocab softmax probabilities (float16 or float32), descending
- ``gold_rank``: ``[P]`` the gold token's column in its row (k: not in the top-k) and
  ``gold_missing``: the ids of those absent gold tokens, in row order (format 3; formats 1-2
  hold ``gold [P]`` as ids)

Attributes identify what the store was made from (:class:`StoreMetadata`), record library
versions and the creation time, and carry a sha256 checksum of every dataset. The writer is
crash-safe (it commits whole examples to ``<path>.partial`` and resumes after a kill) and
publishes the compact final file atomically (:mod:`first_pl.data.store.publish`).
"""

from first_pl.data.store.format import (
    DATASETS,
    FORMAT_VERSION,
    PROBS_DTYPES,
    READABLE_FORMAT_VERSIONS,
    StoreMetadata,
    StoreMismatchError,
    TeacherStoreError,
    example_id_length,
    ids_dtype_for,
    pack_gold,
    partial_path,
    unpack_gold,
)
from first_pl.data.store.ops import merge_shards, truncate_store
from first_pl.data.store.reader import TeacherStore
from first_pl.data.store.writer import TeacherStoreWriter

__all__ = [
    "DATASETS",
    "FORMAT_VERSION",
    "PROBS_DTYPES",
    "READABLE_FORMAT_VERSIONS",
    "StoreMetadata",
    "StoreMismatchError",
    "TeacherStore",
    "TeacherStoreError",
    "TeacherStoreWriter",
    "example_id_length",
    "ids_dtype_for",
    "merge_shards",
    "pack_gold",
    "partial_path",
    "truncate_store",
    "unpack_gold",
]
