"""A dataset's content version: the digest of its canonical table, the key of everything derived from it."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from gainrl_ops.core.fingerprint import DIGEST_CHARS


def dataset_version(table: pa.Table) -> str:
    """Digest of a canonical table's content (each row's id, problem and answer, in order):
    the key of everything derived from it, so an edited file never reuses stale artifacts.

    SHA-256, per column: the UTF-8 byte length of every value as little-endian int64, then all the
    values' bytes end to end, then a 0x01 byte, read straight from the Arrow buffers (no copy of the text)."""
    digest = hashlib.sha256()
    for column in ("id", "problem", "answer"):
        parts = [_lengths_and_bytes(chunk) for chunk in table.column(column).chunks]
        for lengths, _ in parts:
            digest.update(lengths)
        for _, data in parts:
            digest.update(data)
        digest.update(b"\x01")
    return digest.hexdigest()[:DIGEST_CHARS]


def _lengths_and_bytes(strings: pa.Array) -> tuple[np.ndarray, memoryview]:
    """The byte length of each (non-null) string, as int64, and their bytes end to end."""
    _, offsets, data = strings.buffers()
    width = np.int64 if pa.types.is_large_string(strings.type) else np.int32
    ends = np.frombuffer(offsets, dtype=width)[strings.offset : strings.offset + len(strings) + 1].astype(np.int64)
    values = memoryview(data)[int(ends[0]) : int(ends[-1])] if data is not None else memoryview(b"")
    return np.diff(ends).astype("<i8"), values
