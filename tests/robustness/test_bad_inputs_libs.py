"""Bad teacher stores found by the checks that replaced the sha256 at every open: a value
changed behind the store's back passes HDF5's chunk checksums, and `verify-store` and an export
(which checks the sha256 first) name it.

Same table as `test_bad_inputs.py` (`Case(id, provoke, expect)`).
"""

from __future__ import annotations

import pytest
from test_bad_inputs import Case, assert_one_clear_error, corrupt_probs, edit_probs

from first_pl.cli import main

CASES = [
    Case(
        "verify-store-value-changed",
        lambda w, t: main(["verify-store", "--store", str(edit_probs(w, t))]),
        r"copy\.h5 is corrupt: the checksum of dataset 'probs' does not match",
    ),
    Case(
        "verify-store-byte-flipped",
        lambda w, t: main(["verify-store", "--store", str(corrupt_probs(w, t))]),
        r"copy\.h5 is (corrupt|truncated or unreadable)",
    ),
    Case(
        "export-store-value-changed",
        lambda w, t: main(
            ["export-store", "--store", str(edit_probs(w, t)), "--output", str(t / "o.parquet")]
        ),
        r"copy\.h5 is corrupt: the checksum of dataset 'probs' does not match",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gives_one_clear_error(case: Case, world, tmp_path, capsys) -> None:
    assert_one_clear_error(case, world, tmp_path, capsys)


def test_verify_store_passes_a_sound_store(world, capsys) -> None:
    main(["verify-store", "--store", str(world.train_store)])
    assert "every dataset matches its recorded sha256" in capsys.readouterr().out
