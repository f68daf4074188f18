"""`first_pl.teacher.choose_on_store`: a whole store as flat arrays, its answer positions, and the
fingerprint `calibration.json` records."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from first_pl.data.store import StoreMetadata, TeacherStore, TeacherStoreError, TeacherStoreWriter
from first_pl.teacher.choose_on_store import calibrate_store, store_arrays, store_fingerprint
from first_pl.teacher.parameter_search import CalibrationResult

META = StoreMetadata(k=2, vocab_size=20, tokenizer_fingerprint="t", teacher="x", task="y",
                     split="validation", template_fingerprint="z", probs_dtype="float32")  # fmt: skip


def write(path: Path, counts: list[int], first_id: int = 1) -> TeacherStore:
    rows = sum(counts)
    ids = np.stack([np.arange(rows) + first_id, np.arange(rows) + 10], axis=1)
    probs = np.tile([0.75, 0.25], (rows, 1))
    gold = np.arange(rows) + first_id
    with TeacherStoreWriter(path, META) as writer:
        writer.append([f"e{i}" for i in range(len(counts))], ids, probs, gold, counts=counts)
    return TeacherStore(path)


def test_arrays_hold_every_position_and_mark_each_examples_first(tmp_path: Path) -> None:
    store = write(tmp_path / "s.h5", [2, 0, 3])  # the middle example has no response position
    probs, ids, gold, answer_mask = store_arrays(store)
    np.testing.assert_array_equal(ids[:, 0], [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(gold, [1, 2, 3, 4, 5])
    np.testing.assert_allclose(probs, np.tile([0.75, 0.25], (5, 1)))
    np.testing.assert_array_equal(answer_mask, [True, False, True, False, False])


def test_fingerprint_follows_the_contents(tmp_path: Path) -> None:
    same = store_fingerprint(write(tmp_path / "a.h5", [2, 3])), store_fingerprint(write(tmp_path / "b.h5", [2, 3]))
    other = store_fingerprint(write(tmp_path / "c.h5", [2, 3], first_id=2))
    assert same[0] == same[1] and len(same[0]) == 16 and other != same[0]


def test_a_store_without_positions_is_refused_by_name(tmp_path: Path) -> None:
    store = write(tmp_path / "empty.h5", [0, 0])
    with pytest.raises(TeacherStoreError, match=r"empty\.h5 holds no response positions \(2 examples\)"):
        store_arrays(store)


def test_a_top_1_store_is_calibrated_without_label_smoothing_and_says_so(tmp_path: Path) -> None:
    meta = dataclasses.replace(META, k=1)
    path = tmp_path / "k1.h5"
    with TeacherStoreWriter(path, meta) as writer:
        writer.append(["a", "b"], np.array([[1], [2], [3]]), np.array([[0.9], [0.6], [0.7]]),
                      np.array([1, 5, 3]), counts=[2, 1])  # fmt: skip
    with pytest.warns(UserWarning, match=r"label smoothing needs k >= 2 .*k1\.h5 has k = 1: not scored"):
        result = calibrate_store(path, tmp_path / "out")
    assert result.settings["label_smoothing"] == [] and result.settings["k"] == 1
    assert CalibrationResult.from_json(tmp_path / "out" / "calibration.json").parameter == result.parameter
