"""The HDF5 teacher store: exact round trip, crash-safe resume, refusal of bad files, merging."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from first_pl.data.store import (
    FORMAT_VERSION,
    StoreMetadata,
    StoreMismatchError,
    TeacherStore,
    TeacherStoreError,
    TeacherStoreWriter,
    example_id_length,
    ids_dtype_for,
    merge_shards,
    partial_path,
)

VOCAB = 300
K = 3

Example = tuple[str, np.ndarray, np.ndarray, np.ndarray]


def make_meta(**changes) -> StoreMetadata:
    fields = dict(
        k=K,
        vocab_size=VOCAB,
        tokenizer_fingerprint="tok-abc",
        teacher="tiny-teacher",
        task="toy",
        split="train",
        template_fingerprint="tpl-1",
        probs_dtype="float32",
    )
    fields.update(changes)
    return StoreMetadata(**fields)


def make_examples(n: int = 10, seed: int = 0) -> list[Example]:
    """Random examples with 0..6 response positions, descending probabilities summing below 1."""
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(n):
        rows = int(rng.integers(0, 7))
        ids = rng.integers(0, VOCAB, size=(rows, K))
        probs = np.sort(rng.dirichlet(np.ones(K + 1), size=rows)[:, :K], axis=1)[:, ::-1]
        gold = rng.integers(0, VOCAB, size=rows)
        examples.append((f"ex-{i}", ids, probs.astype(np.float32), gold))
    return examples


def append_batches(writer: TeacherStoreWriter, examples: list[Example], batch: int = 3) -> None:
    for start in range(writer.num_done, len(examples), batch):
        chunk = examples[start : start + batch]
        names, ids, probs, gold = zip(*chunk, strict=True)
        writer.append(list(names), ids, probs, gold)


def write_store(path: Path, examples: list[Example], meta: StoreMetadata | None = None) -> Path:
    with TeacherStoreWriter(path, meta or make_meta()) as writer:
        append_batches(writer, examples)
    return path


def snapshot(path: Path) -> dict:
    """Every dataset's values and every attribute except the creation time."""
    with h5py.File(path, "r") as f:
        data = {name: f[name][:] for name in f}
        attrs = {key: value for key, value in f.attrs.items() if key != "created"}
    return {"data": data, "attrs": attrs}


def assert_same_store(a: Path, b: Path) -> None:
    sa, sb = snapshot(a), snapshot(b)
    assert sa["data"].keys() == sb["data"].keys()
    for name in sa["data"]:
        assert sa["data"][name].dtype == sb["data"][name].dtype, name
        np.testing.assert_array_equal(sa["data"][name], sb["data"][name], err_msg=name)
    assert sa["attrs"].keys() == sb["attrs"].keys()
    for key in sa["attrs"]:
        assert np.all(sa["attrs"][key] == sb["attrs"][key]), key


def test_round_trip_is_exact(tmp_path: Path) -> None:
    examples = make_examples()
    path = write_store(tmp_path / "t.h5", examples)
    assert not partial_path(path).exists()
    store = TeacherStore(path)
    assert len(store) == len(examples)
    assert store.example_ids == [e[0] for e in examples]
    counts = [len(e[3]) for e in examples]
    np.testing.assert_array_equal(store.offsets, np.concatenate([[0], np.cumsum(counts)]))
    for i, (name, ids, probs, gold) in enumerate(examples):
        assert store.example_index(name) == i
        got_ids, got_probs, got_gold = store.positions(i)
        assert got_ids.dtype == np.uint16 and got_gold.dtype == np.uint16
        assert got_probs.dtype == np.float32
        np.testing.assert_array_equal(got_ids, ids)
        np.testing.assert_array_equal(got_probs, probs)
        np.testing.assert_array_equal(got_gold, gold)
    assert store.metadata == make_meta()
    attrs = store.attrs
    assert attrs["complete"] is True or attrs["complete"] == 1
    assert attrs["format_version"] == 2
    assert attrs["ids_dtype"] == "uint16"
    assert attrs["probs_dtype"] == "float32"
    assert attrs["committed_examples"] == len(examples)
    assert {"version_torch", "version_transformers", "version_h5py", "version_first_pl"} <= set(
        attrs
    )
    assert attrs["created"].endswith("+00:00")
    assert all(len(attrs[f"sha256_{n}"]) == 64 for n in ("ids", "probs", "gold", "offsets"))
    in_memory = TeacherStore(path).load_all()
    for i in range(len(examples)):
        for a, b in zip(in_memory.positions(i), store.positions(i), strict=True):
            np.testing.assert_array_equal(a, b)


def test_flat_append_equals_per_example_append(tmp_path: Path) -> None:
    examples = make_examples()
    per_example = write_store(tmp_path / "a.h5", examples)
    with TeacherStoreWriter(tmp_path / "b.h5", make_meta()) as writer:
        names, ids, probs, gold = zip(*examples, strict=True)
        counts = [len(g) for g in gold]
        writer.append(
            list(names), np.concatenate(ids), np.concatenate(probs), np.concatenate(gold), counts
        )
    a, b = snapshot(per_example)["data"], snapshot(tmp_path / "b.h5")["data"]
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_float16_and_gzip(tmp_path: Path) -> None:
    examples = make_examples()
    meta = make_meta(probs_dtype="float16")
    with TeacherStoreWriter(tmp_path / "t.h5", meta, compression="gzip") as writer:
        append_batches(writer, examples)
    store = TeacherStore(tmp_path / "t.h5")
    _, probs, _ = store.positions(1)
    assert probs.dtype == np.float16
    np.testing.assert_array_equal(probs, examples[1][2].astype(np.float16))


@pytest.mark.parametrize(
    ("vocab_size", "dtype"),
    [(255, np.uint8), (256, np.uint8), (257, np.uint16), (49152, np.uint16), (70000, np.uint32)],
)
def test_ids_dtype_is_the_smallest_that_holds_the_vocab(vocab_size: int, dtype: type) -> None:
    assert ids_dtype_for(vocab_size) == np.dtype(dtype)


def test_writer_rejects_ids_outside_the_vocab(tmp_path: Path) -> None:
    with TeacherStoreWriter(tmp_path / "t.h5", make_meta()) as writer:
        with pytest.raises(ValueError, match=r"ids outside \[0, 300\)"):
            writer.append(["a"], [np.full((1, K), VOCAB)], [np.zeros((1, K))], [np.zeros(1)])
        with pytest.raises(ValueError, match="duplicate example id"):
            writer.append(
                ["a", "a"], [np.zeros((1, K))] * 2, [np.zeros((1, K))] * 2, [np.zeros(1)] * 2
            )


def test_resume_after_exception_equals_uninterrupted(tmp_path: Path) -> None:
    examples = make_examples(12)
    reference = write_store(tmp_path / "ref.h5", examples)
    path = tmp_path / "t.h5"
    with pytest.raises(RuntimeError, match="boom"), TeacherStoreWriter(path, make_meta()) as writer:
        append_batches(writer, examples[:6])
        raise RuntimeError("boom")
    assert partial_path(path).exists() and not path.exists()
    with TeacherStoreWriter(path, make_meta()) as writer:
        assert writer.num_done == 6
        assert writer.example_ids_done == [e[0] for e in examples[:6]]
        append_batches(writer, examples)
    assert_same_store(reference, path)


KILL_SCRIPT = """
import os, pickle, sys
import numpy as np
from first_pl.data.store import TeacherStoreWriter
path, data = sys.argv[1], sys.argv[2]
meta, examples = pickle.load(open(data, "rb"))
writer = TeacherStoreWriter(path, meta).open()
for start in (0, 3):
    names, ids, probs, gold = zip(*examples[start:start + 3])
    writer.append(list(names), ids, probs, gold)
# half a batch: rows written, never committed, then the process dies without closing
f = writer._file
f["ids"].resize(f["ids"].shape[0] + 4, axis=0)
f["ids"][-4:] = 7
f["example_ids"].resize((7,))
f.flush()
os._exit(3)
"""


def test_resume_after_kill_equals_uninterrupted(tmp_path: Path) -> None:
    examples = make_examples(12)
    reference = write_store(tmp_path / "ref.h5", examples)
    data = tmp_path / "data.pkl"
    data.write_bytes(pickle.dumps((make_meta(), examples)))
    path = tmp_path / "t.h5"
    script = textwrap.dedent(KILL_SCRIPT)
    proc = subprocess.run([sys.executable, "-c", script, str(path), str(data)], capture_output=True)
    assert proc.returncode == 3, proc.stderr.decode()
    with TeacherStoreWriter(path, make_meta()) as writer:
        assert writer.num_done == 6
        append_batches(writer, examples)
    assert_same_store(reference, path)


def test_resume_with_other_metadata_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    with pytest.raises(RuntimeError), TeacherStoreWriter(path, make_meta()) as writer:
        append_batches(writer, make_examples(3))
        raise RuntimeError
    with pytest.raises(
        StoreMismatchError, match="cannot resume .*its teacher is 'tiny-teacher'"
    ) as err:
        TeacherStoreWriter(path, make_meta(teacher="other")).open()
    assert err.value.field == "teacher"
    with TeacherStoreWriter(path, make_meta()) as writer:  # the lock was released
        assert writer.num_done == 3


def test_second_concurrent_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    with TeacherStoreWriter(path, make_meta()) as writer:
        with pytest.raises(
            TeacherStoreError, match=r"being written by another process \(lock .*t.h5.lock"
        ):
            TeacherStoreWriter(path, make_meta()).open()
        append_batches(writer, make_examples(2))
    assert not Path(f"{path}.lock").exists()
    TeacherStore(path)


def test_existing_complete_store_is_not_overwritten(tmp_path: Path) -> None:
    path = write_store(tmp_path / "t.h5", make_examples(3))
    with pytest.raises(TeacherStoreError, match="already exists as a complete store"):
        TeacherStoreWriter(path, make_meta()).open()
    write_store_overwrite = TeacherStoreWriter(path, make_meta(task="new"), overwrite=True)
    with write_store_overwrite as writer:
        append_batches(writer, make_examples(2))
    assert TeacherStore(path).metadata.task == "new"


def test_reader_refuses_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TeacherStoreError, match=r"teacher store .*nope.h5 does not exist$"):
        TeacherStore(tmp_path / "nope.h5")


def test_reader_refuses_partial_and_incomplete(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    with pytest.raises(RuntimeError), TeacherStoreWriter(path, make_meta()) as writer:
        append_batches(writer, make_examples(3))
        raise RuntimeError
    with pytest.raises(TeacherStoreError, match="does not exist \\(a partial store exists"):
        TeacherStore(path)
    with pytest.raises(TeacherStoreError, match="is a partial store still being written"):
        TeacherStore(partial_path(path))
    path.write_bytes(partial_path(path).read_bytes())
    with pytest.raises(
        TeacherStoreError, match="is incomplete \\(its writer never finalized it\\)"
    ):
        TeacherStore(path)


def test_reader_refuses_truncated_file(tmp_path: Path) -> None:
    path = write_store(tmp_path / "t.h5", make_examples(40))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TeacherStoreError, match=r"t.h5 is truncated"):
        TeacherStore(path)


def test_reader_refuses_corrupted_dataset(tmp_path: Path) -> None:
    path = write_store(tmp_path / "t.h5", make_examples(40))
    with h5py.File(path, "r") as f:
        offset = f["probs"].id.get_chunk_info(0).byte_offset
    raw = bytearray(path.read_bytes())
    raw[offset + 8 : offset + 12] = bytes(b ^ 0xFF for b in raw[offset + 8 : offset + 12])
    path.write_bytes(bytes(raw))
    with pytest.raises(TeacherStoreError, match="is corrupt: the checksum of dataset 'probs'"):
        TeacherStore(path)
    TeacherStore(path, verify=False)  # a caller may opt out of the full read


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tokenizer_fingerprint", "tok-other"),
        ("vocab_size", 301),
        ("template_fingerprint", "tpl-2"),
        ("task", "other-task"),
        ("split", "validation"),
    ],
)
def test_validate_against_metadata(tmp_path: Path, field: str, value: object) -> None:
    store = TeacherStore(write_store(tmp_path / "t.h5", make_examples(3)))
    store.validate_against(make_meta())
    with pytest.raises(
        StoreMismatchError, match=f"{field} is .* but {value!r} was expected"
    ) as err:
        store.validate_against({field: value})
    assert err.value.field == field


def test_validate_against_examples_and_vocab(tmp_path: Path) -> None:
    examples = make_examples(5)
    store = TeacherStore(write_store(tmp_path / "t.h5", examples))
    names = [e[0] for e in examples]
    counts = [len(e[3]) for e in examples]
    store.validate_against(
        example_ids=names, positions_per_example=counts, student_vocab_size=VOCAB
    )
    with pytest.raises(StoreMismatchError, match="lacks 1 example id\\(s\\), first 'ex-99'") as err:
        store.validate_against(example_ids=[*names, "ex-99"])
    assert err.value.field == "example_ids"
    bad = {names[2]: counts[2] + 1}
    with pytest.raises(
        StoreMismatchError, match=f"example 'ex-2' has {counts[2]} response positions"
    ) as err:
        store.validate_against(example_ids=names, positions_per_example=bad)
    assert err.value.field == "positions"
    top = max(int(e[1].max()) for e in examples if e[1].size)
    with pytest.raises(
        StoreMismatchError, match=f"teacher token id {top} is beyond the student's vocab"
    ) as err:
        store.validate_against(student_vocab_size=top)
    assert err.value.field == "vocab_size"


@pytest.mark.parametrize(
    ("value", "problem"), [(np.nan, "NaN"), (-0.1, "negative"), (0.9, "row sum > 1")]
)
def test_check_values(tmp_path: Path, value: float, problem: str) -> None:
    examples = make_examples(5)
    examples[3][2][1, 0] = value  # example 3 always has >= 2 rows with seed 0
    store = TeacherStore(write_store(tmp_path / "t.h5", examples))
    row = int(store.offsets[3]) + 1
    with pytest.raises(
        TeacherStoreError, match=f"1 position\\(s\\) with {problem}.* first at row {row}$"
    ):
        store.check_values()
    TeacherStore(write_store(tmp_path / "ok.h5", make_examples(5))).check_values()


def test_reader_pickles_and_reopens_after_fork(tmp_path: Path) -> None:
    examples = make_examples(4)
    store = TeacherStore(write_store(tmp_path / "t.h5", examples))
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone.positions(1)[0], examples[1][1])
    store._pid = -1  # as if this object had crossed a fork: the handle must be reopened
    np.testing.assert_array_equal(store.positions(1)[1], examples[1][2])
    assert store._pid > 0


def test_merge_shards_equals_single_writer(tmp_path: Path) -> None:
    examples = make_examples(11)
    reference = write_store(tmp_path / "ref.h5", examples)
    a = write_store(tmp_path / "a.h5", examples[:6])
    b = write_store(tmp_path / "b.h5", examples[6:])
    merged = merge_shards([a, b], tmp_path / "merged.h5")
    assert_same_store(reference, merged)
    order = [e[0] for e in examples]
    merged_reordered = merge_shards([b, a], tmp_path / "reordered.h5", example_order=order)
    assert_same_store(reference, merged_reordered)
    with pytest.raises(TeacherStoreError, match="does not cover the shards exactly"):
        merge_shards([a, b], tmp_path / "bad.h5", example_order=order[:-1])
    other = write_store(tmp_path / "c.h5", examples[6:], make_meta(split="test"))
    with pytest.raises(TeacherStoreError, match="was made with other metadata"):
        merge_shards([a, other], tmp_path / "bad.h5")


def test_example_ids_are_fixed_length_bytes_with_gzip_and_shuffle(tmp_path: Path) -> None:
    examples = make_examples(12)
    longest = example_id_length(e[0] for e in examples)
    assert longest == len("ex-10")
    path = tmp_path / "t.h5"
    with TeacherStoreWriter(path, make_meta(), id_length=longest) as writer:
        append_batches(writer, examples)
    with h5py.File(path, "r") as f:
        assert f.attrs["compression"] == "none"  # the option is for ids/probs/gold only
        for name in ("example_ids", "offsets"):
            dataset = f[name]
            assert dataset.compression == "gzip" and dataset.shuffle, name
            assert dataset.chunks is not None and dataset.maxshape == (None,), name
        assert f["example_ids"].dtype == np.dtype(f"S{longest}")
        assert f["offsets"].dtype == np.int64
    assert TeacherStore(path).example_ids == [e[0] for e in examples]
    # the width follows the longest id without id_length, so both stores hold the same data
    assert_same_store(write_store(tmp_path / "auto.h5", examples), path)


def test_id_longer_than_id_length_is_refused_before_writing(tmp_path: Path) -> None:
    examples = make_examples(4)
    with TeacherStoreWriter(tmp_path / "t.h5", make_meta(), id_length=4) as writer:
        append_batches(writer, examples[:3])
        with pytest.raises(ValueError, match=r"'ex-3-long' is 9 bytes in UTF-8, longer than id_le"):
            writer.append(["ex-3-long"], [examples[3][1]], [examples[3][2]], [examples[3][3]])
        with pytest.raises(ValueError, match="contains a NUL character"):
            writer.append(["e\0"], [examples[3][1]], [examples[3][2]], [examples[3][3]])
        assert writer.num_done == 3
        append_batches(writer, examples)
    assert TeacherStore(tmp_path / "t.h5").example_ids == [e[0] for e in examples]
    with pytest.raises(ValueError, match="id_length must be >= 1"):
        TeacherStoreWriter(tmp_path / "u.h5", make_meta(), id_length=0)


def test_utf8_ids_are_measured_in_bytes_and_read_back_as_str(tmp_path: Path) -> None:
    names = ["é-1", "日本-2", "", "plain"]
    assert example_id_length(names) == len("日本-2".encode()) == 8
    examples = [(name, *make_examples(1, seed=i)[0][1:]) for i, name in enumerate(names)]
    path = tmp_path / "t.h5"
    with TeacherStoreWriter(path, make_meta(), id_length=8) as writer:
        append_batches(writer, examples)
    store = TeacherStore(path)
    assert store.example_ids == names
    assert all(type(name) is str for name in store.example_ids)


def test_resume_widens_ids_and_recovers_a_kill_while_widening(tmp_path: Path) -> None:
    examples = make_examples(12)
    reference = write_store(tmp_path / "ref.h5", examples)
    path = tmp_path / "t.h5"
    with pytest.raises(RuntimeError), TeacherStoreWriter(path, make_meta()) as writer:
        append_batches(writer, examples[:6])  # ids ex-0..ex-5: 4 bytes wide
        raise RuntimeError
    with h5py.File(partial_path(path), "r+") as f:  # killed after the copy, before the swap
        assert f["example_ids"].dtype == np.dtype("S4")
        wide = f.create_dataset(
            "example_ids_widening", data=f["example_ids"][:].astype("S9"), maxshape=(None,)
        )
        del f["example_ids"]
        assert wide.shape == (6,)
    with TeacherStoreWriter(path, make_meta()) as writer:
        assert writer.example_ids_done == [e[0] for e in examples[:6]]
        append_batches(writer, examples)
    with h5py.File(path, "r") as f:
        assert set(f) == {"example_ids", "offsets", "ids", "probs", "gold"}
        assert f["example_ids"].dtype == np.dtype("S9")
    store = TeacherStore(path)  # checksums are of the ids' values, not of their padding
    assert store.attrs["sha256_example_ids"] == TeacherStore(reference).attrs["sha256_example_ids"]
    assert store.example_ids == [e[0] for e in examples]


def downgrade_to_format_1(path: Path) -> None:
    """Rewrite a store the way format 1 held it: variable-length ids, uncompressed offsets."""
    with h5py.File(path, "r+") as f:
        ids, offsets = [s.decode() for s in f["example_ids"][:]], f["offsets"][:]
        del f["example_ids"], f["offsets"]
        f.create_dataset("example_ids", data=ids, dtype=h5py.string_dtype("utf-8"))
        f.create_dataset("offsets", data=offsets)
        f.attrs["format_version"] = 1


def test_format_1_store_is_read_and_upgraded_by_a_merge(tmp_path: Path) -> None:
    examples = make_examples(8)
    path = write_store(tmp_path / "t.h5", examples)
    downgrade_to_format_1(path)
    old = TeacherStore(path)  # verifies checksums: the ids hash the same in both formats
    assert old.attrs["format_version"] == 1
    assert old.example_ids == [e[0] for e in examples]
    np.testing.assert_array_equal(old.positions(2)[1], examples[2][2])
    upgraded = merge_shards([path], tmp_path / "new.h5")
    assert TeacherStore(upgraded).attrs["format_version"] == FORMAT_VERSION
    assert_same_store(write_store(tmp_path / "ref.h5", examples), upgraded)


def test_unknown_format_is_refused_and_a_format_1_partial_is_not_resumed(tmp_path: Path) -> None:
    path = write_store(tmp_path / "t.h5", make_examples(3))
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 3
    with pytest.raises(TeacherStoreError, match="t.h5 has store format version 3; this first_pl"):
        TeacherStore(path)
    partial = tmp_path / "p.h5"
    with pytest.raises(RuntimeError), TeacherStoreWriter(partial, make_meta()) as writer:
        append_batches(writer, make_examples(3))
        raise RuntimeError
    downgrade_to_format_1(partial_path(partial))
    with pytest.raises(
        TeacherStoreError, match=r"cannot resume .*p.h5.partial: it has store format version 1"
    ):
        TeacherStoreWriter(partial, make_meta()).open()
    assert not Path(f"{partial}.lock").exists()


def test_per_example_storage_is_compact(tmp_path: Path) -> None:
    """ids like generated-train-123 and their offsets: a few bytes per example, not ~65."""
    names = [f"generated-train-{i}" for i in range(20000)]
    path = tmp_path / "t.h5"
    rows = np.zeros((2 * len(names), K))
    with TeacherStoreWriter(path, make_meta(), id_length=example_id_length(names)) as writer:
        for start in range(0, len(names), 1000):
            batch = names[start : start + 1000]
            writer.append(
                batch,
                rows[: 2 * len(batch)],
                rows[: 2 * len(batch)],
                rows[: 2 * len(batch), 0],
                counts=[2] * len(batch),
            )
    with h5py.File(path, "r") as f:
        per_example = sum(f[n].id.get_storage_size() for n in ("example_ids", "offsets"))
    assert per_example / len(names) < 12
    store = TeacherStore(path)
    assert store.example_ids[12345] == "generated-train-12345" and store.num_positions == 40000
