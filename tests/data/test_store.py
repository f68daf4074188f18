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
    DATASETS,
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
    truncate_store,
)
from first_pl.data.store.format import dataset_checksum

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


def write_store(
    path: Path, examples: list[Example], meta: StoreMetadata | None = None, compression=None
) -> Path:
    with TeacherStoreWriter(path, meta or make_meta(), compression=compression) as writer:
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
    assert attrs["format_version"] == FORMAT_VERSION == 3
    assert attrs["ids_dtype"] == "uint16"
    assert attrs["probs_dtype"] == "float32"
    assert attrs["committed_examples"] == len(examples)
    assert {"version_torch", "version_transformers", "version_h5py", "version_first_pl"} <= set(
        attrs
    )
    assert attrs["created"].endswith("+00:00")
    assert all(len(attrs[f"sha256_{n}"]) == 64 for n in DATASETS)
    assert set(DATASETS) == {"example_ids", "offsets", "ids", "probs", "gold_rank", "gold_missing"}
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


def _flip_bytes(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset + 8 : offset + 12] = bytes(b ^ 0xFF for b in raw[offset + 8 : offset + 12])
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_a_damaged_chunk_fails_its_read_and_verify_by_name(tmp_path: Path, compression) -> None:
    """A flipped byte inside a chunk of probs: the store still opens (no full hash at open), the
    read that touches the chunk fails its Fletcher-32 with one error naming the file and the
    dataset, and the sha256 check of `verify-store` fails too."""
    path = write_store(tmp_path / "t.h5", make_examples(40), compression=compression)
    with h5py.File(path, "r") as f:
        assert all(f[name].fletcher32 for name in ("ids", "probs", "gold_rank", "example_ids"))
        offset = f["probs"].id.get_chunk_info(0).byte_offset
    _flip_bytes(path, offset)
    store = TeacherStore(path)
    first = next(i for i in range(len(store)) if store.offsets[i + 1] > store.offsets[i])
    with pytest.raises(
        TeacherStoreError,
        match=r"t\.h5 is corrupt: reading rows \d+\.\.\d+ of dataset 'probs' failed its chunk "
        r"checksum or decompression \(.*\); extract or import the store again$",
    ):
        store.positions(first)
    with pytest.raises(TeacherStoreError, match=r"t\.h5 is (corrupt|truncated or unreadable)"):
        store.verify_checksums()


def test_a_changed_value_is_found_by_the_sha256_only(tmp_path: Path) -> None:
    """A value rewritten through HDF5 keeps valid chunk checksums: the recorded sha256 (the
    store's identity) is what names it."""
    path = write_store(tmp_path / "t.h5", make_examples(40))
    with h5py.File(path, "r+") as f:
        f["probs"][0, 0] = f["probs"][0, 0] / 2
    store = TeacherStore(path)
    with pytest.raises(TeacherStoreError, match="is corrupt: the checksum of dataset 'probs'"):
        store.verify_checksums()


def test_a_store_without_chunk_checksums_still_opens_and_verifies(tmp_path: Path) -> None:
    """Stores published before Fletcher-32 (contiguous ids/probs, unchecked chunks) read as before."""
    new = write_store(tmp_path / "new.h5", make_examples(20))
    old = tmp_path / "old.h5"
    with h5py.File(new, "r") as src, h5py.File(old, "w") as dst:
        for name in src:
            dst.create_dataset(name, data=src[name][:])  # contiguous, no filter
        dst.attrs.update(src.attrs)
    with h5py.File(old, "r") as f:
        assert not any(f[name].fletcher32 for name in f)
    a, b = TeacherStore(new), TeacherStore(old)
    b.verify_checksums()
    for i in range(len(a)):
        for x, y in zip(a.positions(i), b.positions(i), strict=True):
            np.testing.assert_array_equal(x, y)


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
        assert f.attrs["compression"] == "gzip"  # the default, for ids/probs
        for name in ("example_ids", "offsets"):
            dataset = f[name]
            assert dataset.compression == "gzip" and dataset.shuffle, name
            assert dataset.chunks is not None, name
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
        assert set(f) == set(DATASETS)
        assert f["example_ids"].dtype == np.dtype("S9")
    store = TeacherStore(path)  # checksums are of the ids' values, not of their padding
    assert store.attrs["sha256_example_ids"] == TeacherStore(reference).attrs["sha256_example_ids"]
    assert store.example_ids == [e[0] for e in examples]


def downgrade_to_format_2(path: Path) -> None:
    """Rewrite a store the way format 2 held it: gold as a token id per position."""
    with h5py.File(path, "r") as f:
        if "gold" in f:  # a partial file: it holds gold ids already
            return
    gold = np.concatenate([g for _, _, g in TeacherStore(path).iter_blocks()])
    with h5py.File(path, "r+") as f:
        for name in ("gold_rank", "gold_missing"):
            del f[name], f.attrs[f"sha256_{name}"]
        f.create_dataset("gold", data=gold.astype(f["ids"].dtype))
        f.attrs["sha256_gold"] = dataset_checksum(f["gold"])
        f.attrs["format_version"] = 2


def downgrade_to_format_1(path: Path) -> None:
    """Rewrite a store the way format 1 held it: variable-length ids, uncompressed offsets."""
    downgrade_to_format_2(path)
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
        f.attrs["format_version"] = 4
    with pytest.raises(TeacherStoreError, match="t.h5 has store format version 4; this first_pl"):
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


def teacher_like(n: int = 30, seed: int = 0) -> list[Example]:
    """Examples whose gold token is mostly the top-1, sometimes lower, sometimes outside."""
    examples = make_examples(n, seed)
    rng = np.random.default_rng(seed + 1)
    out = []
    for name, ids, probs, _ in examples:
        rank = rng.choice([0, 0, 0, 1, 2, K], size=len(ids))
        gold = np.where(rank < K, ids[np.arange(len(ids)), np.minimum(rank, K - 1)], VOCAB - 1)
        ids = np.where(ids == VOCAB - 1, 0, ids)  # VOCAB - 1 is never among the top-k
        out.append((name, ids, probs, gold))
    return out


def test_gold_is_packed_as_ranks_and_read_back_exactly(tmp_path: Path) -> None:
    examples = teacher_like()
    path = write_store(tmp_path / "t.h5", examples)
    flat_ids = np.concatenate([e[1] for e in examples])
    flat_gold = np.concatenate([e[3] for e in examples])
    with h5py.File(path, "r") as f:
        assert "gold" not in f and f["gold_rank"].dtype == np.uint8
        rank, missing = f["gold_rank"][:], f["gold_missing"][:]
    absent = ~(flat_ids == flat_gold[:, None]).any(1)
    np.testing.assert_array_equal(rank == K, absent)
    np.testing.assert_array_equal(missing, flat_gold[absent])
    store = TeacherStore(path)
    for i, (_, ids, _, gold) in enumerate(examples):
        np.testing.assert_array_equal(store.positions(i)[2], gold)
        np.testing.assert_array_equal(store.positions(i)[0], ids)
    for rows in (1, 7, 1000):  # blocks that split examples and missing runs anywhere
        streamed = np.concatenate([g for _, _, g in store.iter_blocks(rows)])
        np.testing.assert_array_equal(streamed, flat_gold)
    memory = TeacherStore(path).load_all()
    np.testing.assert_array_equal(memory.positions(5)[2], examples[5][3])


@pytest.mark.parametrize("version", [1, 2])
def test_older_formats_are_read_with_their_gold_ids(tmp_path: Path, version: int) -> None:
    examples = teacher_like(12)
    path = write_store(tmp_path / "t.h5", examples)
    (downgrade_to_format_1 if version == 1 else downgrade_to_format_2)(path)
    old = TeacherStore(path)  # verifies the checksums of the old layout
    assert old.attrs["format_version"] == version and not old.packed
    for i, (_, ids, probs, gold) in enumerate(examples):
        for got, want in zip(old.positions(i), (ids, probs, gold), strict=True):
            np.testing.assert_array_equal(got, want)
    assert_same_store(
        write_store(tmp_path / "ref.h5", examples), merge_shards([path], tmp_path / "up.h5")
    )


def test_truncate_store_keeps_the_first_k_columns_and_the_gold(tmp_path: Path) -> None:
    examples = teacher_like(20)
    source = write_store(tmp_path / "k3.h5", examples)
    small = TeacherStore(truncate_store(source, tmp_path / "k1.h5", 1))
    assert small.metadata == make_meta(k=1)
    for i, (_, ids, probs, gold) in enumerate(examples):
        got_ids, got_probs, got_gold = small.positions(i)
        np.testing.assert_array_equal(got_ids, ids[:, :1])
        np.testing.assert_array_equal(got_probs, probs[:, :1])
        np.testing.assert_array_equal(got_gold, gold)  # gold outside the top-1 is kept
    assert small.example_ids == [e[0] for e in examples]
    with pytest.raises(ValueError, match=r"k must be in \[1, 3\] \(the k of .*k3.h5\), got 4"):
        truncate_store(source, tmp_path / "k4.h5", 4)


def test_a_kill_while_publishing_keeps_the_partial_and_a_rerun_publishes(tmp_path, monkeypatch):
    import first_pl.data.store.writer as writer_module

    examples = teacher_like(9)
    path = tmp_path / "t.h5"

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer_module, "publish", killed)
    with pytest.raises(KeyboardInterrupt), TeacherStoreWriter(path, make_meta()) as writer:
        append_batches(writer, examples)
    assert not path.exists() and partial_path(path).exists()
    assert not list(tmp_path.glob(".t.h5.tmp*"))
    monkeypatch.undo()
    with TeacherStoreWriter(path, make_meta()) as writer:
        assert writer.num_done == len(examples)
    assert_same_store(path, write_store(tmp_path / "ref.h5", examples))
    assert not partial_path(path).exists()


def test_gold_costs_a_fraction_of_a_byte_when_the_teacher_is_mostly_right(tmp_path: Path) -> None:
    """Format 2 stored 2 bytes of gold id per position (uint16 at a 49k vocabulary)."""
    rng = np.random.default_rng(0)
    n, vocab = 20_000, 49152
    ids = rng.integers(1, vocab, size=(n, 5))
    gold = np.where(rng.random(n) < 0.85, ids[:, 0], 0)  # top-1 right 85%, else outside
    meta = make_meta(k=5, vocab_size=vocab, probs_dtype="float16")
    probs = np.full((n, 5), 0.1)
    with TeacherStoreWriter(tmp_path / "t.h5", meta) as writer:
        writer.append([f"e{i}" for i in range(n // 2)], ids, probs, gold, counts=[2] * (n // 2))
    with h5py.File(tmp_path / "t.h5", "r") as f:
        gold_bytes = sum(f[name].id.get_storage_size() for name in ("gold_rank", "gold_missing"))
    assert gold_bytes / n < 0.5
