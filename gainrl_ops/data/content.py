"""A dataset's content version: the digest of its canonical table, the key of everything derived from it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gainrl_ops.core.fingerprint import DIGEST_CHARS

_VERSION_COLUMNS = ("id", "problem", "answer")
_DECODED_BYTES = 1 << 21  # text of a stored column decoded at a time: small blocks are reused, large ones add to the peak


def dataset_version(table: pa.Table) -> str:
    """Digest of a canonical table's content (each row's id, problem and answer, in order):
    the key of everything derived from it, so an edited file never reuses stale artifacts.

    SHA-256, per column: the UTF-8 byte length of every value as little-endian int64, then all the
    values' bytes end to end, then a 0x01 byte, read straight from the Arrow buffers (no copy of the text)."""
    digest = hashlib.sha256()
    for column in _VERSION_COLUMNS:
        chunks = table.column(column).chunks
        _digest_column(digest, (_lengths(chunk) for chunk in chunks), (_values(chunk) for chunk in chunks))
    return digest.hexdigest()[:DIGEST_CHARS]


class PartsVersion:
    """`dataset_version` of a canonical table given part by part, in order, by a loader that
    does not keep the table: it holds each value's byte length, and reads the values back from
    the table's prompts file (`digest`). Holding no text keeps the loader's memory flat: values
    kept from every part would pin the allocator's pages between the parts' passing buffers."""

    def __init__(self) -> None:
        self._lengths: dict[str, list[np.ndarray]] = {column: [] for column in _VERSION_COLUMNS}

    def add(self, part: pa.Table) -> None:
        for column, lengths in self._lengths.items():
            lengths += [np.diff(_ends(chunk)).astype(np.int32) for chunk in part.column(column).chunks]

    def digest(self, prompts_file: memoryview) -> str:
        """The version of the parts given, whose rows `prompts_file` (a Parquet file's bytes) holds in the same order."""
        digest = hashlib.sha256()
        for column, lengths in self._lengths.items():
            rows, size = sum(map(len, lengths)), sum(int(part.sum()) for part in lengths)
            batch = max(1, _DECODED_BYTES * rows // max(size, 1))
            _digest_column(digest, (part.astype("<i8") for part in lengths), _stored_values(prompts_file, column, batch))
        return digest.hexdigest()[:DIGEST_CHARS]


def _digest_column(digest: hashlib._Hash, lengths: Iterable[np.ndarray], values: Iterable[memoryview]) -> None:
    for part in lengths:
        digest.update(part)
    for part in values:
        digest.update(part)
    digest.update(b"\x01")


def _stored_values(parquet: memoryview, column: str, rows: int) -> Iterator[memoryview]:
    """The bytes of a string column of a Parquet file, decoded `rows` at a time, the next batch
    on another thread while the caller digests this one (both let go of the GIL)."""
    batches = pq.ParquetFile(pa.BufferReader(parquet)).iter_batches(rows, columns=[column], use_threads=False)
    with ThreadPoolExecutor(1) as decoder:
        ahead = decoder.submit(next, batches, None)
        while (batch := ahead.result()) is not None:
            ahead = decoder.submit(next, batches, None)
            yield _values(batch.column(0))


def _ends(strings: pa.Array) -> np.ndarray:
    """The offsets of a (non-null) string array's values in its data buffer, as int64."""
    width = np.int64 if pa.types.is_large_string(strings.type) else np.int32
    return np.frombuffer(strings.buffers()[1], dtype=width)[strings.offset : strings.offset + len(strings) + 1].astype(np.int64)


def _lengths(strings: pa.Array) -> np.ndarray:
    """The UTF-8 byte length of each value, as little-endian int64."""
    return np.diff(_ends(strings)).astype("<i8")


def _values(strings: pa.Array) -> memoryview:
    """The values' bytes end to end, without a copy."""
    ends, data = _ends(strings), strings.buffers()[2]
    return memoryview(data)[int(ends[0]) : int(ends[-1])] if data is not None else memoryview(b"")
