"""Input files as byte streams, compressed or not: `.jsonl.gz`, `.json.gz`, `.jsonl.zst` are
read as users keep them, decompressed block by block as they are read (never whole in memory).

pyarrow's decoders (gzip and zstd) do the work, so no extra package is needed.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}  # file suffix -> pyarrow codec
_BUFFER = 1 << 20  # bytes decompressed at a time for line-by-line reading


def codec(path: Path) -> str | None:
    """The compression of `path`, from its last suffix; None for a plain file."""
    return COMPRESSIONS.get(path.suffix.lower())


def format_suffix(path: Path) -> str:
    """The format's suffix under any compression suffix: ".jsonl" for "x.jsonl.gz"."""
    inner = path.with_suffix("") if codec(path) else path
    return inner.suffix.lower()


def stem(path: Path) -> str:
    """The file name without its format and compression suffixes: "gsm8k" for "gsm8k.jsonl.zst"."""
    return (path.with_suffix("") if codec(path) else path).stem


def open_native(path: Path) -> pa.NativeFile:
    """`path` as an Arrow input stream, decompressing as it is read."""
    raw = pa.OSFile(str(path))
    compression = codec(path)
    return pa.CompressedInputStream(raw, compression) if compression else raw


def open_binary(path: Path) -> BinaryIO:
    """`path` as a buffered Python binary file (lines, `read(n)`), decompressing as it is read."""
    if codec(path) is None:
        return path.open("rb")
    return io.BufferedReader(open_native(path), _BUFFER)  # type: ignore[arg-type]
