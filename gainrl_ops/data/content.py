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
        chunks = table.column(column).chunks
        # Two passes over the chunks, so that only one chunk's lengths are held at a time.
        for chunk in chunks:
            digest.update(np.diff(_ends(chunk)).astype("<i8"))
        for chunk in chunks:
            ends, data = _ends(chunk), chunk.buffers()[2]
            if data is not None:
                digest.update(memoryview(data)[int(ends[0]) : int(ends[-1])])
        digest.update(b"\x01")
    return digest.hexdigest()[:DIGEST_CHARS]


def _ends(strings: pa.Array) -> np.ndarray:
    """The offsets of a (non-null) string array's values in its data buffer, as int64."""
    width = np.int64 if pa.types.is_large_string(strings.type) else np.int32
    return np.frombuffer(strings.buffers()[1], dtype=width)[strings.offset : strings.offset + len(strings) + 1].astype(np.int64)
