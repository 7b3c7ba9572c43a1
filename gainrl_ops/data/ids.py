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

_SPACE = np.uint8(ord(" "))
_WINDOW = 1 << 18  # bytes of text compared at a time
# The low 64 bits of md5_number are the digest's first 8 bytes read as a little-endian number:
# the 16 hex digits of an id (DIGEST_CHARS).
_HASH_SQL = "SELECT (md5_number(text) & 18446744073709551615)::UBIGINT AS head FROM texts"
# A byte -> its two hex digits, as the little-endian uint16 whose bytes they are (in order).
_HEX_PAIRS = np.frombuffer("".join(f"{byte:02x}" for byte in range(256)).encode(), dtype="<u2")


def normalise_problem(problem: str) -> str:
    """The text a problem id digests: NFC, whitespace runs collapsed to one space, stripped."""
    return " ".join(unicodedata.normalize("NFC", problem).split())


def problem_id(problem: str) -> str:
    """The id of one problem (see the module's docstring)."""
    return hashlib.md5(normalise_problem(problem).encode("utf-8")).hexdigest()[:DIGEST_CHARS]


def problem_ids(problems: pa.Array | pa.ChunkedArray, con: duckdb.DuckDBPyConnection | None = None) -> pa.ChunkedArray:
    """`problem_id` of each (non-null) problem, hashed by DuckDB over the whole column at once."""
    return pa.chunked_array([hashed_problems(problems, con)[0]], pa.string())


def hashed_problems(problems: pa.Array | pa.ChunkedArray, con: duckdb.DuckDBPyConnection | None = None) -> tuple[pa.Array, np.ndarray]:
    """`problem_ids`, and each id as the uint64 its 16 hex digits spell (ids compare as these do).
    `con`: a database to hash on, through a cursor of its own (opening one costs about 20 ms).

    DuckDB gives the digest's first 8 bytes as a number; the hex digits are spelled from them
    here, which costs less than DuckDB's 32-digit text cut down to 16."""
    chunks = problems.chunks if isinstance(problems, pa.ChunkedArray) else [problems]
    texts = pa.table({"text": pa.chunked_array([_normalised(chunk.cast(pa.string())) for chunk in chunks], pa.string())})
    with (con.cursor() if con is not None else duckdb.connect()) as cursor:
        cursor.register("texts", texts)
        heads = cursor.sql(_HASH_SQL).to_arrow_table().column("head").combine_chunks()
    digest = np.frombuffer(heads.buffers()[1], dtype="<u8")[heads.offset : heads.offset + len(heads)]
    spelled = _HEX_PAIRS[digest.view(np.uint8)]  # the digest's first 8 bytes, in order, each as its 2 digits
    offsets = np.arange(0, DIGEST_CHARS * (len(heads) + 1), DIGEST_CHARS, dtype=np.int32)
    validity = heads.buffers()[0] if heads.null_count else None
    ids = pa.Array.from_buffers(pa.string(), len(heads), [validity, pa.py_buffer(offsets), pa.py_buffer(spelled.view(np.uint8))], heads.null_count, heads.offset if validity else 0)
    return ids, digest.byteswap()


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
    byte that is not printable ASCII (non-ASCII, a control character: Python's ASCII whitespace
    other than the space is among them), two spaces in a row, or a space at either end. Arrow's
    kernels and numpy comparisons: a regular expression costs five times as much, and Arrow's
    substring search for two spaces three times as much."""
    marks = np.zeros(len(problems), dtype=bool)
    if len(problems) == 0 or problems.null_count == len(problems):
        return marks
    odd = pc.or_(pc.invert(pc.ascii_is_printable(problems)), pc.or_(pc.starts_with(problems, " "), pc.ends_with(problems, " ")))
    marks |= _bools(pc.and_kleene(odd, pc.is_valid(odd)))  # a null problem is not irregular
    _, offsets, data = problems.buffers()
    if data is None:
        return marks
    ends = np.frombuffer(offsets, dtype=np.int32)[problems.offset : problems.offset + len(problems) + 1]
    text = np.frombuffer(data, dtype=np.uint8)[ends[0] : ends[-1]]
    # Two spaces in a row, found in windows of the text with two small reused buffers: arrays
    # the size of the text would cost their page faults.
    space = np.empty(min(_WINDOW, len(text)) + 1, dtype=bool)
    pair = np.empty(min(_WINDOW, len(text)), dtype=bool)
    for first in range(0, len(text) - 1, _WINDOW):
        chunk = text[first : first + _WINDOW + 1]  # one byte more: a pair across windows is seen
        is_space = np.equal(chunk, _SPACE, out=space[: len(chunk)])
        found = np.logical_and(is_space[:-1], is_space[1:], out=pair[: len(chunk) - 1])
        if found.any():
            marks[np.searchsorted(ends[1:] - ends[0], np.flatnonzero(found) + first, side="right")] = True
    return marks


def _bools(mask: pa.Array) -> np.ndarray:
    """A boolean Arrow array without nulls as numpy, unpacked from its bitmap (to_numpy imports pandas)."""
    bits = np.frombuffer(mask.buffers()[1], dtype=np.uint8)
    return np.unpackbits(bits, bitorder="little")[mask.offset : mask.offset + len(mask)].view(bool)
