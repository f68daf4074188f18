"""Reading an offline W&B run folder's `run-<id>.wandb` file in tests (wandb 0.31 reads it in Go
only): its records, the keys of its history, and the run's name, group and job type."""

from __future__ import annotations

import struct
import time
from pathlib import Path


def wandb_records(path: Path, wait_s: float = 60.0) -> list:
    """The records of an offline W&B run file (`run-<id>.wandb`), once its writer has finished.

    `wandb.finish()` can return before the wandb-core process has written the run's last records
    (the history of the last step is committed at exit), so a file read at once may end early
    under load; the file is read again until its `exit` record is there (or `wait_s` passes)."""
    deadline = time.monotonic() + wait_s
    while True:
        records = read_records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def read_records(path: Path) -> list:
    """The records in an offline W&B run file now: a LevelDB log (7-byte header
    `:W&B` + magic + version, 32 KiB blocks of chunks: CRC32, length, type FULL/FIRST/MIDDLE/LAST)
    of `wandb_internal_pb2.Record` messages; wandb 0.31 reads it in Go only, so it is read here."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    records, pending, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 or pos + 7 + length > len(data):  # not written (yet)
            break
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def history_keys(path: Path) -> set[str]:
    """Every key logged to the history of an offline W&B run file."""
    return {
        item.key or "/".join(item.nested_key)
        for record in wandb_records(path)
        if record.WhichOneof("record_type") == "history"
        for item in record.history.item
    }


def run_record(path: Path):
    """The run record (name, group, job type) of an offline W&B run file."""
    return next(r.run for r in wandb_records(path) if r.WhichOneof("record_type") == "run")
