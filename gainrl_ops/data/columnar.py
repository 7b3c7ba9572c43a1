"""Loading a large, regular file in whole columns (polars), with the per-row loader for the rest.

`load_columnar` handles JSON Lines and Parquet files whose problem and answer are plain
columns: it validates and normalises whole columns, hands only the rows that fail (or that
need a worked solution parsed) to the per-row converter, and returns exactly what the
per-row loader would. Anything it does not cover (another format, nested or float metadata,
mixed source or difficulty fields, a file polars cannot parse) returns None, and
`load_dataset` reads the file row by row as before.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from gainrl_ops.core.fingerprint import DIGEST_CHARS
from gainrl_ops.data import datasets as rows
from gainrl_ops.data.datasets import (
    ANSWER_FIELDS,
    CANONICAL_SCHEMA,
    DIFFICULTY_FIELDS,
    PROBLEM_FIELDS,
    REJECTS_SCHEMA,
    SOURCE_FIELDS,
    DatasetError,
    FieldMap,
    LoadedDataset,
)

log = logging.getLogger(__name__)
# Metadata columns whose JSON polars writes exactly as the per-row loader's json.dumps does.
_PLAIN_TYPES = (pl.String, pl.Boolean, pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)
# Text whose problem id needs more than hashing: Python's str.split() whitespace other than
# single inner spaces (problem ids collapse it), found in bulk by RE2.
_IRREGULAR_SPACE = r"^[\t\n\x0b\x0c\r\x1c-\x1f ]|[\t\n\x0b\x0c\r\x1c-\x1f ]$|[\t\n\x0b\x0c\r\x1c-\x1f]|  "
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _read(path: Path) -> tuple[pl.DataFrame, _Lines | None] | None:
    """The file as a frame, and for JSON Lines its lines (to re-read a failing row exactly)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path), None
        if suffix not in (".jsonl", ".ndjson"):
            return None
        data = path.read_bytes()
        if data.startswith(b"\xef\xbb\xbf"):
            return None
        data.decode("utf-8")  # Arrow would keep invalid bytes that the per-row reader reports
        if (b"\\ud" in data or b"\\uD" in data) and _SURROGATE_ESCAPE.search(data):
            return None  # Arrow would replace a lone surrogate that the per-row reader reports
        # Arrow's reader, not polars': it refuses a column whose JSON type changes between rows
        # (polars would coerce a number or a list into text), so such a file goes row by row.
        frame = pl.from_arrow(pa_json.read_json(io.BytesIO(data)))
    except Exception:  # noqa: BLE001 - whatever cannot be read this way, the per-row reader reports precisely
        return None
    lines = _Lines(data)
    # Arrow skips blank lines, which the per-row reader counts: then the rows do not line up.
    return (frame, lines) if frame.height == len(lines) else None


class _Lines:
    """The lines of a JSON Lines file, found only when a row must be re-read."""

    def __init__(self, data: bytes):
        self.data = data
        self._ends: np.ndarray | None = None

    def __len__(self) -> int:
        return self.data.count(b"\n") + (0 if self.data.endswith(b"\n") or not self.data else 1)

    def __getitem__(self, row: int) -> bytes:
        if self._ends is None:
            ends = np.flatnonzero(np.frombuffer(self.data, dtype=np.uint8) == ord("\n"))
            self._ends = ends if self.data.endswith(b"\n") else np.append(ends, len(self.data))
        start = 0 if row == 0 else int(self._ends[row - 1]) + 1
        return self.data[start : int(self._ends[row])]


def _chosen(columns: list[str], named: str | None, candidates: tuple[str, ...]) -> str | None:
    """The column that plays a role; None also when a named field is not a column (a nested path)."""
    if named is not None:
        return named if named in columns else None
    return next((c for c in candidates if c in columns), None)


def problem_ids(problems: pl.Series) -> list[str]:
    """`datasets.problem_id` of each problem. Most problems are ASCII with single spaces, so
    their normal form is the text itself; only the others are normalised one by one."""
    arrow = problems.to_arrow()
    irregular = pc.or_(pc.invert(pc.string_is_ascii(arrow)), pc.match_substring_regex(arrow, _IRREGULAR_SPACE)).to_pylist()
    out = []
    for text, normalise in zip(arrow.to_pylist(), irregular, strict=True):
        if normalise:
            text = " ".join(unicodedata.normalize("NFC", text).split())
        out.append(hashlib.blake2b(text.encode("utf-8"), digest_size=32).hexdigest()[:DIGEST_CHARS])
    return out


def load_columnar(path: Path, fields: FieldMap, on_error: str, source: str | None, default_source: str) -> LoadedDataset | None:
    """The canonical table of `path` built column-wise, or None where only the per-row loader applies."""
    read = _read(path)
    if read is None:
        return None
    frame, lines = read
    columns = frame.columns
    problem = _chosen(columns, fields.problem, PROBLEM_FIELDS)
    answer = _chosen(columns, fields.answer, ANSWER_FIELDS)
    if problem is None or answer is None or fields.source is not None:
        return None
    if frame.schema[problem] != pl.String or frame.schema[answer] not in (pl.String, *_PLAIN_TYPES[2:]):
        return None
    if frame.height == 0 or frame[problem][0] is None or frame[answer][0] is None:
        return None  # the per-row loader picks its fields on the first row: let it
    source_field = None if source is not None else next((c for c in SOURCE_FIELDS if c in columns), None)
    if source_field is not None and frame.schema[source_field] != pl.String:
        return None
    difficulty_fields = [c for c in DIFFICULTY_FIELDS if c in columns]
    consumed = {problem, answer, *([source_field] if source_field else []), *difficulty_fields}
    metadata_columns = sorted(c for c in columns if c not in consumed)
    if any(frame.schema[c] not in _PLAIN_TYPES for c in metadata_columns):
        return None
    if len(difficulty_fields) > 1 or (difficulty_fields and frame.schema[difficulty_fields[0]] not in _PLAIN_TYPES[2:]):
        return None

    answer_text = pl.col(answer).cast(pl.String)
    table = frame.with_row_index("row").with_columns(
        problem=pl.col(problem),
        answer=answer_text.str.strip_chars(),
        source=(pl.col(source_field) if source_field else pl.lit(source or default_source)),
        difficulty=pl.col(difficulty_fields[0]).cast(pl.Float64) if difficulty_fields else pl.lit(None, pl.Float64),
        metadata=pl.struct(metadata_columns).struct.json_encode() if metadata_columns else pl.lit("{}"),
        # Rows the per-row converter must see: missing or empty text, or a solution to parse.
        per_row=(
            pl.col(problem).is_null() | (pl.col(problem).str.strip_chars() == "") | answer_text.is_null()
            | (answer_text.str.strip_chars() == "") | answer_text.str.contains("####", literal=True)
            | answer_text.str.contains("\\boxed{", literal=True)
            | (pl.col(source_field).is_null() | (pl.col(source_field).str.strip_chars() == "") if source_field else pl.lit(False))
            | (pl.col(difficulty_fields[0]).is_null() if difficulty_fields else pl.lit(False))
            # In JSON Lines a null may be an absent key, which the metadata must leave out.
            | (pl.any_horizontal(pl.col(metadata_columns).is_null()) if lines is not None and metadata_columns else pl.lit(False))
        ),
    )
    if source_field:
        table = table.with_columns(source=pl.col("source").str.strip_chars())
    fast = table.filter(~pl.col("per_row"))
    fast = fast.with_columns(id=pl.Series(problem_ids(fast["problem"]), dtype=pl.String))
    canonical = fast.select("id", "problem", "answer", "source", "difficulty", "metadata", "row")

    slow_rows = table.filter(pl.col("per_row"))["row"].to_list()
    converter = rows._RowConverter(str(path), fields, default_source, explicit_source=source is not None)
    converter._chosen.update({"problem": problem, "answer": answer})
    rejects: dict[str, list[Any]] = {name: [] for name in REJECTS_SCHEMA.names}
    converted = []
    for row in slow_rows:
        record = _record(frame, lines, row)
        try:
            converted.append(converter.convert(row, record))
        except DatasetError as error:
            if on_error == "fail":
                raise
            rows._add_reject(rejects, error, rows._raw(record))
    if converted:
        canonical = pl.concat([canonical, pl.DataFrame(converted, schema=canonical.schema)]).sort("row")
    return _finish(path, frame, lines, canonical, rejects)


def _record(frame: pl.DataFrame, lines: _Lines | None, row: int) -> Any:
    """The row as the per-row reader sees it: JSON Lines re-read from its line (an absent key
    stays absent), Parquet as its Arrow row."""
    if lines is None:
        return frame.row(row, named=True)
    return rows.parse_jsonl_line(row, lines[row])


def _finish(path: Path, frame: pl.DataFrame, lines: _Lines | None, canonical: pl.DataFrame, rejects: dict[str, list[Any]]) -> LoadedDataset:
    """Drop duplicate problems (the first one wins, the others become rejects), as the per-row loader does."""
    file = str(path)
    first = canonical.with_columns(first_row=pl.col("row").first().over("id"))
    duplicates = first.filter(pl.col("row") != pl.col("first_row"))
    for row, first_row, id_ in duplicates.select("row", "first_row", "id").iter_rows():
        error = DatasetError(file, f"duplicate of row {first_row} (id {id_})", row, "problem")
        rows._add_reject(rejects, error, rows._raw(_record(frame, lines, row)))
    kept = first.filter(pl.col("row") == pl.col("first_row")).drop("first_row")
    n_read, n_bad = frame.height, len(rejects["row"]) - duplicates.height
    if n_read == 0:
        raise DatasetError(file, "no rows to load (the dataset is empty)")
    if kept.is_empty():
        raise DatasetError(file, f"no valid rows: all {n_read} rows were rejected (first: row {rejects['row'][0]}, field {rejects['field'][0]!r}: {rejects['reason'][0]})")
    if n_bad:
        rows.logger.warning("%s: skipped %d bad row(s) of %d; see the rejects table", file, n_bad, n_read)
    if duplicates.height:
        rows.logger.warning("%s: dropped %d duplicate problem(s) of %d rows", file, duplicates.height, n_read)
    reject_table = pa.Table.from_pydict(rejects, schema=REJECTS_SCHEMA)
    order = pa.array(sorted(range(reject_table.num_rows), key=lambda i: rejects["row"][i]), pa.int64())
    return LoadedDataset(
        table=kept.to_arrow().cast(CANONICAL_SCHEMA),
        rejects=reject_table.take(order),
        n_read=n_read,
        duplicates=duplicates.height,
    )
