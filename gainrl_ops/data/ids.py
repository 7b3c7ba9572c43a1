"""The problem id: the one definition of it, for one text and for a whole column.

A problem's id is the first 16 hex digits of the MD5 digest of its UTF-8 bytes after NFC
normalisation, with every run of whitespace (Python's `str.split()`) collapsed to one space
and stripped at both ends. The same problem keeps its id across formats, re-exports and
whitespace or Unicode-normalisation differences, and anyone can recompute it from the text:

    hashlib.md5(" ".join(unicodedata.normalize("NFC", text).split()).encode()).hexdigest()[:16]

MD5 because DuckDB computes it over a whole Arrow column at about 0.4 s per million problems
(Python's per-problem hashing costs about 1 us a row); the id names content, it is not a
signature. A column is normalised in Python only where the text is not already normal
(non-ASCII, or whitespace other than single inner spaces).
"""

from __future__ import annotations

import hashlib
import unicodedata

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gainrl_ops.core.fingerprint import DIGEST_CHARS

_SPACE = ord(" ")
_HASH_SQL = f"SELECT left(md5(text), {DIGEST_CHARS}) AS id FROM texts"


def normalise_problem(problem: str) -> str:
    """The text a problem id digests: NFC, whitespace runs collapsed to one space, stripped."""
    return " ".join(unicodedata.normalize("NFC", problem).split())


def problem_id(problem: str) -> str:
    """The id of one problem (see the module's docstring)."""
    return hashlib.md5(normalise_problem(problem).encode("utf-8")).hexdigest()[:DIGEST_CHARS]


def problem_ids(problems: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    """`problem_id` of each (non-null) problem, hashed by DuckDB over the whole column at once."""
    chunks = problems.chunks if isinstance(problems, pa.ChunkedArray) else [problems]
    texts = pa.table({"text": pa.chunked_array([_normalised(chunk.cast(pa.string())) for chunk in chunks], pa.string())})  # noqa: F841 - DuckDB reads it by name
    with duckdb.connect() as con:
        ids = con.sql(_HASH_SQL).to_arrow_table().column("id")
    return ids.cast(pa.string())


def _normalised(problems: pa.Array) -> pa.Array:
    """`problems` with the texts that are not already normal replaced by `normalise_problem`'s."""
    mask = _irregular(problems)
    if not mask.any():
        return problems
    rows = np.flatnonzero(mask)
    normal = [normalise_problem(text) for text in problems.take(pa.array(rows)).to_pylist()]
    return pc.replace_with_mask(problems, pa.array(mask), pa.array(normal, pa.string()))


def _irregular(problems: pa.Array) -> np.ndarray:
    """Marks the rows whose text may change under `normalise_problem` (and a few that will not): a
    non-ASCII byte or a control character (Python's ASCII whitespace other than the space is
    among them), two spaces in a row, or a space at either end. Found in the Arrow buffers with
    numpy comparisons: a regular expression over the text costs five times as much."""
    _, offsets, data = problems.buffers()
    marks = np.zeros(len(problems), dtype=bool)
    if data is None or len(problems) == 0:
        return marks
    ends = np.frombuffer(offsets, dtype=np.int32)[problems.offset : problems.offset + len(problems) + 1]
    text = np.frombuffer(data, dtype=np.uint8)[ends[0] : ends[-1]]
    flagged = (text - np.uint8(0x20)) >= 0x60  # below 0x20 (wrapped around) or not ASCII
    space = text == _SPACE
    flagged[:-1] |= space[:-1] & space[1:]
    starts, stops = ends[:-1] - ends[0], ends[1:] - ends[0]
    marks[np.searchsorted(stops, np.flatnonzero(flagged), side="right")] = True
    nonempty = np.flatnonzero(stops > starts)
    marks[nonempty[(text[starts[nonempty]] == _SPACE) | (text[stops[nonempty] - 1] == _SPACE)]] = True
    return marks
