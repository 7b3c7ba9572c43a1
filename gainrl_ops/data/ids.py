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
import pyarrow as pa
import pyarrow.compute as pc

from gainrl_ops.core.fingerprint import DIGEST_CHARS

# Python's str.split() whitespace other than single inner spaces, found in bulk by RE2: the
# ASCII whitespace characters (the non-ASCII ones are caught by the ASCII test).
_IRREGULAR_SPACE = r"^[\t\n\x0b\x0c\r\x1c-\x1f ]|[\t\n\x0b\x0c\r\x1c-\x1f ]$|[\t\n\x0b\x0c\r\x1c-\x1f]|  "
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
    irregular = pc.or_(pc.invert(pc.string_is_ascii(problems)), pc.match_substring_regex(problems, _IRREGULAR_SPACE))
    irregular = pc.and_kleene(irregular, pc.is_valid(irregular))  # a null problem is left null
    if not pc.any(irregular).as_py():
        return problems
    normal = [normalise_problem(text) for text in problems.filter(irregular).to_pylist()]
    return pc.replace_with_mask(problems, irregular, pa.array(normal, pa.string()))
