"""The prefix memo on disk: one HDF5 file of hidden states after layer L, keyed by sequence.

Layout (format 1): `keys` [N] (32-character hex `sequence_key`s, sorted), `offsets` [N + 1]
(int64; row i is `hidden[offsets[i]:offsets[i + 1]]`) and `hidden` [tokens, H] float32, with
attributes naming what the states are of: `source` (the model), `prefix_layers`, `hidden_size`
and `format`. A file made for another model, depth or width is refused by name, never read as
this prefix's states. It is written under a temporary name and renamed, so a crash leaves no
half file that looks complete.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from first_pl.fileio.atomic import atomic_write
from first_pl.prefix.frozen import FrozenPrefix

FORMAT = 1


class PrefixStoreError(ValueError):
    """A prefix store that is missing, damaged or made for another prefix."""


def identity(prefix: FrozenPrefix) -> dict[str, object]:
    return {
        "format": FORMAT,
        "source": prefix.source,
        "prefix_layers": prefix.layers,
        "hidden_size": prefix.hidden_size,
    }


def save_memo(prefix: FrozenPrefix, path: str | Path) -> Path:
    """Write every state of the prefix's memo to `path` (replacing it whole)."""
    keys = sorted(prefix.memo)
    lengths = np.array([prefix.memo[k].shape[0] for k in keys], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("keys", data=np.array(keys, dtype="S32"))
            f.create_dataset("offsets", data=offsets)
            hidden = f.create_dataset(
                "hidden", shape=(int(offsets[-1]), prefix.hidden_size), dtype="float32"
            )
            for key, start, end in zip(keys, offsets[:-1], offsets[1:], strict=True):
                hidden[start:end] = prefix.memo[key].numpy()
            f.attrs.update(identity(prefix))

    atomic_write(Path(path), write)
    return Path(path)


class StoredStates:
    """The states of a store, read row by row on demand (`key in states`, `states[key]`)."""

    def __init__(self, path: Path, keys: list[str], offsets: np.ndarray) -> None:
        self.path = path
        self.index = {key: (int(a), int(b)) for key, a, b in zip(keys, offsets[:-1], offsets[1:], strict=True)}
        self._file: h5py.File | None = None

    def __contains__(self, key: str) -> bool:
        return key in self.index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: str) -> torch.Tensor:
        if self._file is None:
            self._file = h5py.File(self.path, "r")
        start, end = self.index[key]
        return torch.from_numpy(self._file["hidden"][start:end])


def load_memo(prefix: FrozenPrefix, path: str | Path) -> int:
    """Give the prefix the states of the store at `path` (read when first needed); returns how
    many sequences the store holds."""
    path = Path(path)
    if not path.is_file():
        raise PrefixStoreError(f"model.prefix_cache {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            attrs = {name: f.attrs.get(name) for name in identity(prefix)}
            keys = [k.decode() for k in f["keys"][:]]
            offsets = f["offsets"][:]
            states = f["hidden"].shape[0]
    except (OSError, KeyError) as err:
        raise PrefixStoreError(f"model.prefix_cache {path} is not a prefix store: {err}") from err
    expected = identity(prefix)
    differ = {k: (_plain(attrs[k]), v) for k, v in expected.items() if _plain(attrs[k]) != v}
    if differ:
        detail = "; ".join(f"{k} {got!r} (this model: {want!r})" for k, (got, want) in differ.items())
        raise PrefixStoreError(f"model.prefix_cache {path} holds the states of another prefix: {detail}")
    if len(offsets) != len(keys) + 1 or int(offsets[-1]) != states:
        raise PrefixStoreError(
            f"model.prefix_cache {path} is damaged: {len(keys)} keys, {len(offsets)} offsets, "
            f"{states} states"
        )
    prefix.stored = StoredStates(path, keys, offsets)
    return len(keys)


def _plain(value: object) -> object:
    """An HDF5 attribute as the Python value `identity` compares it with."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
