"""A whole teacher store as the flat arrays that choosing a transform's parameter reads, and the
fingerprint of its contents that `calibration.json` records (so a result names the exact store)."""

from __future__ import annotations

import hashlib

import numpy as np

from first_pl.data.store import TeacherStore, TeacherStoreError


def store_fingerprint(store: TeacherStore) -> str:
    """Identity of a store's contents: a hash of the per-dataset checksums its writer recorded."""
    digest = hashlib.sha256()
    for name in sorted(key for key in store.attrs if key.startswith("sha256_")):
        digest.update(f"{name}={store.attrs[name]}".encode())
    return digest.hexdigest()[:16]


def store_arrays(store: TeacherStore) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`(probs [P, k], ids [P, k], gold [P], answer_mask [P])` of a whole store.

    The answer mask marks each example's first response position (`offsets[:-1]`): in a
    multiple-choice store that is the answer letter.
    """
    if store.num_positions == 0:
        raise TeacherStoreError(
            f"{store.path} holds no response positions ({len(store)} examples): nothing to "
            "calibrate on; extract the validation split again"
        )
    ids, probs, gold = (np.concatenate(parts) for parts in zip(*store.iter_blocks(), strict=True))
    answer_mask = np.zeros(store.num_positions, dtype=bool)
    starts = store.offsets[:-1]
    answer_mask[starts[starts < store.offsets[1:]]] = True
    return probs, ids, gold, answer_mask
