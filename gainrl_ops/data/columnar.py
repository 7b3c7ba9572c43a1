"""Loading a large, regular file in whole columns (Arrow compute), with the per-row loader for the rest.

`load_columnar` handles JSON Lines and Parquet files whose problem and answer are plain
columns: it validates and normalises whole columns, hands only the rows that fail (or that
need a worked solution parsed) to the per-row converter, and returns exactly what the
per-row loader would. Anything it does not cover (another format, nested or float metadata,
mixed source or difficulty fields, a file Arrow cannot parse) returns None, and
`load_dataset` reads the file row by row as before.

Everything on the path of a regular row stays in Arrow buffers: no polars round trip (each
one copies the text), no Python object per row. The work is spread over the cores: Arrow
parses JSON Lines ahead on its threads, each parsed block is converted and hashed on a pool
of threads, the raw lines are scanned on another, and the prompts file is encoded on one
more as blocks are done. Where the caller keeps no table (`keep_table=False`, as
`prepare_dataset` loads), a part is let go once encoded: the load holds a few blocks, the ids
as numbers and the prompts file, and the content version digests the parts' lengths and the
file (`content.PartsVersion`). pyarrow imports pandas (about 0.7 s) the first time it converts a Python or numpy
object to Arrow or back (pa.array, pa.scalar, to_numpy): this path builds its constants and
reads its indices through buffers instead, so a regular file never pays for it.
"""

from __future__ import annotations

import json
import os
import re
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from gainrl_ops.core.fingerprint import DIGEST_CHARS
from gainrl_ops.core.storage import ParquetBytes
from gainrl_ops.data.answers import MARKERS
from gainrl_ops.data.content import PartsVersion, dataset_version
from gainrl_ops.data.errors import DatasetError
from gainrl_ops.data.ids import hashed_problems
from gainrl_ops.data.prompts_file import prompts_encoder
from gainrl_ops.data.records import (
    ANSWER_FIELDS,
    CANONICAL_SCHEMA,
    DIFFICULTY_FIELDS,
    PROBLEM_FIELDS,
    REJECTS_SCHEMA,
    SOURCE_FIELDS,
    FieldMap,
    LoadedDataset,
    RecordConverter,
    add_reject,
    all_rejected,
    new_rejects,
    parse_jsonl_line,
    raw_text,
    warn_dropped,
)
from gainrl_ops.data.streams import codec, format_suffix, open_binary, open_native

# Every character for which str.isspace() is true: text made only of these is empty to the
# per-row loader (`not text.strip()`).
PYTHON_WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
_BLANK = f"^[{PYTHON_WHITESPACE}]*$"
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_BOM = b"\xef\xbb\xbf"
_NEWLINE = np.uint8(ord("\n"))
_HEX_VALUE = np.zeros(256, dtype=np.uint8)  # a hex digit's byte -> its value
_HEX_VALUE[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16, dtype=np.uint8)
_SCAN_BYTES = 1 << 22  # the JSON Lines file is checked in blocks this big, never held whole
# Arrow's JSON blocks of 1 MiB, converted two at a time: the parse's threads keep memory in
# proportion to the block (a streamed 1M-prompt load peaked at 480-510 MB with blocks of 4 MiB,
# 345-390 MB with these), while each converted part has a fixed cost (parts of one 1 MiB block
# took 25-35% longer). Parsing costs the same CPU from 1 to 4 MiB.
_JSON_BLOCK = pa_json.ReadOptions(block_size=1 << 20)
_BLOCKS_PER_PART = 2
# json.dumps (ensure_ascii=False) escapes a backslash, a quote and the control characters.
_JSON_CONTROL = {chr(c): json.dumps(chr(c))[1:-1] for c in range(0x20)}
# Blocks are converted and hashed on this many threads while Arrow parses the next ones (Arrow's
# kernels, numpy and DuckDB let go of the GIL); a few more may wait, parsed, for a thread.
_WORKERS = min(4, os.cpu_count() or 1)
_PARQUET_PART = 131_072  # rows of a Parquet file converted at a time


def _is_text(type_: pa.DataType) -> bool:
    return pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_string_view(type_)


def _is_plain(type_: pa.DataType) -> bool:
    """A metadata column whose JSON `_metadata_json` writes exactly as the per-row loader's json.dumps does."""
    return _is_text(type_) or pa.types.is_boolean(type_) or pa.types.is_integer(type_)


def _repeated(text: str, n: int) -> pa.Array:
    """`text` n times (large_string: n copies may pass 2 GiB)."""
    data = text.encode("utf-8")
    offsets = np.arange(n + 1, dtype=np.int64) * len(data)
    return pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data * n)])


def _int64(values: np.ndarray) -> pa.Array:
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(np.ascontiguousarray(values, dtype=np.int64))])


def _numpy(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A fixed-width integer array without nulls as numpy, read from its buffer."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    dtype = np.dtype(f"{'u' if pa.types.is_unsigned_integer(array.type) else 'i'}{array.type.bit_width // 8}")
    return np.frombuffer(array.buffers()[1], dtype=dtype)[array.offset : array.offset + len(array)]


class _Lines:
    """The lines of a JSON Lines file, read again from the file only when rows must be re-read.

    The file is not kept in memory: the size and modification time it had when it was parsed
    must still hold when lines are re-read, or a line might not be the row that was parsed."""

    def __init__(self, path: Path, stat: os.stat_result, count: int):
        self.path = path
        self._stat = (stat.st_size, stat.st_mtime_ns)
        self.count = count
        self._ends: np.ndarray | None = None

    def read(self, rows: list[int]) -> list[bytes]:
        """Lines `rows` (0-based), in that order."""
        stat = self.path.stat()
        if (stat.st_size, stat.st_mtime_ns) != self._stat:
            raise DatasetError(str(self.path), "the file changed while it was being loaded; load it again")
        if codec(self.path) is not None:  # no seeking in a compressed stream: one pass picks the lines
            wanted = set(rows)
            with open_binary(self.path) as f:
                found = {row: line.rstrip(b"\n") for row, line in enumerate(f) if row in wanted}
            return [found[row] for row in rows]
        with self.path.open("rb") as f:
            if self._ends is None:
                ends, offset = [], 0
                while block := f.read(_SCAN_BYTES):
                    ends.append(np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == ord("\n")) + offset)
                    offset += len(block)
                found_ends = np.concatenate(ends) if ends else np.empty(0, np.int64)
                self._ends = found_ends if len(found_ends) == self.count else np.append(found_ends, offset)
            out = []
            for row in rows:
                start = 0 if row == 0 else int(self._ends[row - 1]) + 1
                f.seek(start)
                out.append(f.read(int(self._ends[row]) - start))
        return out


def _scan_jsonl(path: Path) -> _Lines | None:
    """The file's lines, or None where Arrow's reader would not see what the per-row reader sees:
    a BOM, bytes that are not UTF-8 (Arrow keeps them) or an escaped lone surrogate (Arrow
    replaces it). Read (and decompressed) in blocks, so the file is never in memory whole."""
    stat = path.stat()
    count, tail, last, partial = 0, b"", b"\n", b""
    # One buffer for every block, and one for the newline flags: a fresh block each time costs
    # its page faults again.
    buffer = bytearray(_SCAN_BYTES)
    newline = np.empty(_SCAN_BYTES, dtype=bool)
    try:
        with open_binary(path) as f:
            while size := f.readinto(buffer):
                block = memoryview(buffer)[:size]
                if not tail and bytes(block[:3]) == _BOM:
                    return None
                # Checked in whole lines (a newline is never inside a character), without copying the block.
                first, cut = buffer.find(b"\n", 0, size) + 1, buffer.rfind(b"\n", 0, size) + 1
                if cut and not (_is_utf8(partial + block[:first]) and _is_utf8(block[first:cut])):
                    return None
                partial = bytes(block[cut:]) if cut else partial + block
                # An escape cut in two by the block boundary is seen in the junction (a backslash is found at memchr speed).
                if (buffer.find(b"\\", 0, size) >= 0 and _SURROGATE_ESCAPE.search(buffer, 0, size)) or _SURROGATE_ESCAPE.search(tail + block[:5]):
                    return None
                count += int(np.count_nonzero(np.equal(np.frombuffer(buffer, np.uint8, size), _NEWLINE, out=newline[:size])))
                tail, last = bytes(block[-5:]), bytes(block[-1:])
    except (OSError, pa.ArrowException):  # a damaged compressed file: the per-row reader says where
        return None
    if partial and not _is_utf8(partial):
        return None
    return _Lines(path, stat, count + (0 if last == b"\n" else 1))


def _is_utf8(data: bytes | memoryview) -> bool:
    """Whether `data` is valid UTF-8, checked at Arrow's (vectorised) speed."""
    text = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(np.array([0, len(data)], dtype=np.int32)), pa.py_buffer(data)])
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


class _Unfit(Exception):
    """A JSON block that does not fit the column types Arrow inferred from the first one."""


@dataclass(frozen=True)
class _Source:
    """A file opened for the column-wise path: its columns, its rows in parts, and what the
    per-row converter needs to see a row again (the lines of JSON Lines, found by the scan
    that runs beside the parse; the Parquet table)."""

    schema: pa.Schema
    parts: Iterator[pa.Table]
    scan: Future[_Lines | None] | None = None
    table: pa.Table | None = None

    @property
    def jsonl(self) -> bool:
        return self.scan is not None

    @property
    def lines(self) -> _Lines | None:
        """The file's lines; None where the scan found that the per-row reader must read it."""
        return self.scan.result() if self.scan is not None else None


def _open(path: Path, scan: Future[_Lines | None] | None, whole: bool) -> _Source | None:
    """The file's rows as Arrow tables: a Parquet file at once, JSON Lines block by block while
    the rows already read are processed (Arrow parses ahead on its own threads), or at once
    (`whole`) so that types are inferred from every block. Raises _Unfit where the first
    block does not settle the types."""
    try:
        if scan is None:
            table = pq.read_table(path)
            table.validate(full=True)  # Parquet text is not checked for UTF-8 until this
            parts = (table.slice(start, _PARQUET_PART) for start in range(0, table.num_rows, _PARQUET_PART))
            return _Source(table.schema, parts, table=table)
        # Arrow's reader, not polars': it refuses a column whose JSON type changes between rows
        # (polars would coerce a number or a list into text), so such a file goes row by row.
        if whole:
            table = pa_json.read_json(open_native(path), read_options=_JSON_BLOCK)
            return _Source(table.schema, iter([table]), scan)
        reader = pa_json.open_json(open_native(path), read_options=_JSON_BLOCK)
    except Exception:  # noqa: BLE001 - whatever cannot be read this way, the per-row reader reports precisely
        return None
    if any(pa.types.is_null(field.type) for field in reader.schema):
        raise _Unfit("a column is null throughout the first block: its type is in a later one")

    def blocks() -> Iterator[pa.Table]:
        batches: list[pa.RecordBatch] = []
        while True:
            try:
                batches.append(reader.read_next_batch())
            except StopIteration:
                break
            except pa.ArrowInvalid as error:
                raise _Unfit(str(error)) from None
            if len(batches) == _BLOCKS_PER_PART:
                yield pa.Table.from_batches(batches)
                batches = []
        if batches:
            yield pa.Table.from_batches(batches)

    return _Source(reader.schema, blocks(), scan)


def _chosen(columns: list[str], named: str | None, candidates: tuple[str, ...]) -> str | None:
    """The column that plays a role; None also when a named field is not a column (a nested path)."""
    if named is not None:
        return named if named in columns else None
    return next((c for c in candidates if c in columns), None)


def _json_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Each string as json.dumps(ensure_ascii=False) writes it; nulls stay null."""
    text = column.cast(pa.large_string())
    for char, escaped in (("\\", "\\\\"), ('"', '\\"')):
        if pc.any(pc.match_substring(text, char)).as_py():
            text = pc.replace_substring(text, char, escaped)
    if pc.any(pc.match_substring_regex(text, "[\\x00-\\x1f]")).as_py():
        for char, escaped in _JSON_CONTROL.items():
            text = pc.replace_substring(text, char, escaped)
    quote = _repeated('"', len(text))
    return pc.binary_join_element_wise(quote, text, quote, _repeated("", len(text)))


def _metadata_json(table: pa.Table, names: list[str]) -> pa.ChunkedArray | pa.Array:
    """The metadata columns of each row as the per-row loader's `_to_json` writes them (keys
    sorted, compact, null for a null value)."""
    n = table.num_rows
    if not names:
        return _repeated("{}", n)
    pieces: list[Any] = []
    for i, name in enumerate(names):
        column = table.column(name)
        if pa.types.is_boolean(column.type):
            value = pc.if_else(column, _repeated("true", n), _repeated("false", n))
        elif pa.types.is_integer(column.type):
            value = column.cast(pa.large_string())
        else:
            value = _json_text(column)
        key = ("{" if i == 0 else ",") + json.dumps(name, ensure_ascii=False) + ":"
        pieces += [_repeated(key, n), pc.if_else(pc.is_null(value), _repeated("null", n), value)]
    return pc.binary_join_element_wise(*pieces, _repeated("}", n), _repeated("", n))


def _blank(texts: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """Whether each (string) text is empty or whitespace only, as `not text.strip()` says; None
    where no text can be: each starts with printable ASCII other than the space. The regular
    expression costs about 35 ns a row even when the first character settles it."""
    for chunk in texts.chunks:
        _, offsets, data = chunk.buffers()
        ends = np.frombuffer(offsets, dtype=np.int32)[chunk.offset : chunk.offset + len(chunk) + 1]
        starts, nonempty = ends[:-1], ends[1:] > ends[:-1]  # a null counts as empty: it is flagged anyway
        if not nonempty.all():
            break
        first = np.frombuffer(data, dtype=np.uint8)[starts] if len(starts) else np.empty(0, np.uint8)
        if ((first - np.uint8(0x21)) >= 0x5E).any():  # below "!" (wrapped around), or "~" and above
            break
    else:
        return None
    return pc.match_substring_regex(texts, _BLANK)


def _any(*masks: pa.ChunkedArray | None) -> pa.ChunkedArray:
    """Element-wise or of boolean masks, a null counting as true."""
    present = [m for m in masks if m is not None]
    out = present[0]
    for mask in present[1:]:
        out = pc.or_kleene(out, mask)
    return pc.or_kleene(out, pc.is_null(out))


@dataclass(frozen=True)
class _Roles:
    """Which columns hold what, decided once from the file's columns."""

    problem: str
    answer: str
    source: str | None  # a column; None: every row gets `constant_source`
    constant_source: str
    difficulty: str | None
    metadata: list[str]  # sorted, as the per-row loader's JSON keys are


def _roles(schema: pa.Schema, fields: FieldMap, source: str | None, default_source: str) -> _Roles | None:
    """The columns' roles, or None where the file needs the per-row loader."""
    columns = schema.names
    problem = _chosen(columns, fields.problem, PROBLEM_FIELDS)
    answer = _chosen(columns, fields.answer, ANSWER_FIELDS)
    if problem is None or answer is None or fields.source is not None or len(set(columns)) < len(columns):
        return None
    answer_type = schema.field(answer).type
    if not _is_text(schema.field(problem).type) or not (_is_text(answer_type) or pa.types.is_integer(answer_type)):
        return None
    source_field = None if source is not None else next((c for c in SOURCE_FIELDS if c in columns), None)
    if source_field is not None and not _is_text(schema.field(source_field).type):
        return None
    difficulty_fields = [c for c in DIFFICULTY_FIELDS if c in columns]
    if len(difficulty_fields) > 1 or (difficulty_fields and not pa.types.is_integer(schema.field(difficulty_fields[0]).type)):
        return None
    consumed = {problem, answer, *([source_field] if source_field else []), *difficulty_fields}
    metadata = sorted(c for c in columns if c not in consumed)
    if not all(_is_plain(schema.field(c).type) for c in metadata):
        return None
    return _Roles(problem, answer, source_field, source or default_source, difficulty_fields[0] if difficulty_fields else None, metadata)


def _canonical_part(part: pa.Table, first_row: int, roles: _Roles, absent_keys: bool) -> tuple[pa.Table, np.ndarray]:
    """The canonical rows of `part` (rows `first_row`... of the file) that need no per-row
    handling, without their id, and the file rows of
    those that do. `absent_keys`: a null may be a missing key."""
    n = part.num_rows
    problems = part.column(roles.problem).cast(pa.string())
    answers = part.column(roles.answer).cast(pa.string())
    sources = part.column(roles.source).cast(pa.string()) if roles.source else None
    difficulty = part.column(roles.difficulty) if roles.difficulty else None
    # Rows the per-row converter must see: missing or empty text, or a solution to parse.
    per_row = _any(
        pc.is_null(problems), _blank(problems),
        pc.is_null(answers), _blank(answers),
        *(pc.match_substring(answers, marker) for marker in MARKERS),
        _blank(sources) if sources is not None else None,
        pc.is_null(difficulty) if difficulty is not None else None,
        # In JSON Lines a null may be an absent key, which the metadata must leave out.
        *(pc.is_null(part.column(c)) for c in (roles.metadata if absent_keys else [])),
    )
    slow_rows = _numpy(pc.indices_nonzero(per_row)) + first_row
    canonical = pa.Table.from_arrays([
        problems,
        pc.utf8_trim_whitespace(answers),
        pc.utf8_trim_whitespace(sources) if sources is not None else _repeated(roles.constant_source, n),
        difficulty.cast(pa.float64(), safe=False) if difficulty is not None else pa.nulls(n, pa.float64()),
        _metadata_json(part, roles.metadata),
        _int64(np.arange(first_row, first_row + n)),
    ], names=CANONICAL_SCHEMA.names[1:])
    if len(slow_rows):
        canonical = canonical.filter(pc.invert(per_row))
    return canonical, slow_rows


def load_columnar(
    path: Path, fields: FieldMap, on_error: str, source: str | None, default_source: str, converter: RecordConverter, keep_table: bool = True
) -> LoadedDataset | None:
    """The canonical table of `path` built column-wise, or None where only the per-row loader applies.
    `converter` (the per-row loader's, for the same arguments) converts the rows that need it.
    `keep_table=False`: where every row is regular and none is a duplicate (the usual case), the
    rows go into the prompts file (`encoded`) part by part and the table is not kept (None)."""
    suffix = format_suffix(path)
    load = partial(_load, path=path, fields=fields, on_error=on_error, source=source, default_source=default_source, converter=converter, keep=keep_table)
    if suffix == ".parquet" and codec(path) is None:
        return load(_open(path, None, whole=True))
    if suffix not in (".jsonl", ".ndjson"):
        return None
    # The scan reads the file beside Arrow's parse; what it finds is awaited before any row is used.
    with ThreadPoolExecutor(1) as scanner:
        scan = scanner.submit(_scan_jsonl, path)
        try:
            return load(_open(path, scan, whole=False))
        except _Unfit:  # a later block's types differ from the first one's: infer them from every block
            if scan.result() is None:
                return None
            return load(_open(path, scan, whole=True))


def _load(
    opened: _Source | None, *, path: Path, fields: FieldMap, on_error: str, source: str | None, default_source: str, converter: RecordConverter, keep: bool
) -> LoadedDataset | None:
    if opened is None or (roles := _roles(opened.schema, fields, source, default_source)) is None:
        return None
    try:
        blocks, n_read, encoded, parts = _convert_blocks(opened, roles, keep)
    except _Unfit:
        raise
    except Exception:  # noqa: BLE001 - text the scan refuses (not UTF-8) may fail a kernel first
        if opened.jsonl and opened.lines is None:
            return None
        raise
    # Arrow skips blank lines, which the per-row reader counts: then the rows do not line up.
    if blocks is None or n_read == 0 or (opened.jsonl and (opened.lines is None or n_read != opened.lines.count)):
        return None
    # Sorted runs merge at the cost of a pass (timsort); sorting them in the threads costs the main one nothing.
    ordered = np.concatenate([block.sorted_keys for block in blocks])
    ordered.sort(kind="stable")
    # The usual result: every row regular, no duplicate. Only it keeps the prompts file and the
    # version made on the way, so only its version is hashed (while the rest is settled).
    usual = not any(len(block.slow_rows) for block in blocks) and not _has_duplicates(ordered)
    if keep:
        canonical: pa.Table | None = pa.concat_tables([block.canonical for block in blocks])
    elif usual:
        canonical = None
    else:  # rows to convert one by one or to drop, in the file order: the parts come back from the prompts file
        canonical = pq.read_table(pa.BufferReader(encoded.result())).cast(CANONICAL_SCHEMA)
    with ThreadPoolExecutor(1) as hasher:
        version = None
        if usual:
            version = hasher.submit(parts.digest, encoded.result()) if canonical is None else hasher.submit(dataset_version, canonical)
        return _settle(path, opened, n_read, canonical, ordered, blocks, converter, roles, on_error, encoded, version)


def _settle(
    path: Path,
    opened: _Source,
    n_read: int,
    canonical: pa.Table | None,
    ordered: np.ndarray,
    blocks: list[_Block],
    converter: RecordConverter,
    roles: _Roles,
    on_error: str,
    encoded: Future[memoryview] | None,
    version: Future[str] | None,
) -> LoadedDataset:
    """The load's result from the converted blocks (`canonical`: their rows, None where they
    were not kept), given their ids as sorted numbers: the rows that need it converted one by
    one, then duplicates dropped."""
    slow_rows = np.concatenate([block.slow_rows for block in blocks]).tolist()

    converter.choose("problem", roles.problem)
    converter.choose("answer", roles.answer)
    rejects = new_rejects()
    converted = []
    for row, record in zip(slow_rows, _records(opened, slow_rows), strict=True):
        try:
            converted.append(converter.convert(row, record))
        except DatasetError as error:
            if on_error == "fail":
                raise
            add_reject(rejects, error, raw_text(record))
    if converted:
        canonical = pa.concat_tables([canonical, pa.Table.from_pylist(converted, schema=CANONICAL_SCHEMA)])
        canonical = canonical.take(pc.sort_indices(canonical.column("row")))
        ordered, encoded, version = np.sort(_id_numbers(canonical.column("id"))), None, None
    return _finish(path, opened, n_read, canonical, ordered, rejects, encoded, version)


@dataclass(frozen=True)
class _Block:
    """One part of the file, converted: its regular rows with their ids (None once encoded, where
    the table is not kept), the ids as the numbers their digits spell, sorted, and the file rows
    of the others."""

    canonical: pa.Table | None
    sorted_keys: np.ndarray
    slow_rows: np.ndarray


def _convert_blocks(opened: _Source, roles: _Roles, keep: bool) -> tuple[list[_Block] | None, int, Future[memoryview] | None, PartsVersion]:
    """The file's parts converted on `_WORKERS` threads, in order, the number of rows read, the
    prompts file of all their regular rows, encoded on one more thread as parts are done (the
    load's prompts unless rows are converted one by one or dropped as duplicates), and what the
    version of those rows needs where the parts are not kept. None where the first row leaves
    the choice of fields to the per-row loader."""
    pending: deque[Future[_Block]] = deque()
    blocks: list[_Block] = []
    n_read = 0
    prompts = prompts_encoder()
    writes: list[Future[None]] = []
    parts = PartsVersion()

    # One database for every block's hashing, each block on a cursor of its own; DuckDB's own
    # threads would only contend with the pool's.
    with duckdb.connect(config={"threads": 1}) as con, ThreadPoolExecutor(_WORKERS) as pool, ThreadPoolExecutor(1) as encoder:

        def done(future: Future[_Block]) -> None:
            block = future.result()
            writes.append(encoder.submit(prompts.write, block.canonical))  # one thread: in order
            if not keep:  # the rows live on in the encoder until written, then only in the prompts file
                parts.add(block.canonical)
                block = replace(block, canonical=None)
            blocks.append(block)

        try:
            for part in opened.parts:
                if part.num_rows == 0:
                    continue
                if n_read == 0 and not (part.column(roles.problem)[0].is_valid and part.column(roles.answer)[0].is_valid):
                    return None, 0, None, parts  # the per-row loader picks its fields on the first row: let it
                pending.append(pool.submit(_convert_block, part, n_read, roles, opened.jsonl, con))
                n_read += part.num_rows
                while len(pending) > _WORKERS:  # parsed blocks waiting for a thread hold memory
                    done(pending.popleft())
            while pending:
                done(pending.popleft())
        finally:
            for future in pending:
                future.cancel()
        encoded = encoder.submit(_finished, prompts, writes)
    return blocks, n_read, encoded, parts


def _finished(prompts: ParquetBytes, writes: list[Future[None]]) -> memoryview:
    """The prompts file, once every write into it is known to have succeeded (a failed one raises)."""
    for write in writes:
        write.result()
    return prompts.finish()


def _convert_block(part: pa.Table, first_row: int, roles: _Roles, absent_keys: bool, con: duckdb.DuckDBPyConnection) -> _Block:
    """A part's regular rows with their ids, and the file rows of the others (`_canonical_part`)."""
    canonical, slow_rows = _canonical_part(part, first_row, roles, absent_keys)
    ids, keys = hashed_problems(canonical.column("problem"), con)
    keys.sort()
    return _Block(canonical.add_column(0, "id", ids).cast(CANONICAL_SCHEMA), keys, slow_rows)


def _records(opened: _Source, which: list[int]) -> list[Any]:
    """Rows as the per-row reader sees them: JSON Lines re-read from their lines (an absent key
    stays absent), Parquet as Arrow rows."""
    if not which:
        return []
    if opened.lines is None:
        return opened.table.take(_int64(np.asarray(which, dtype=np.int64))).to_pylist()
    return [parse_jsonl_line(row, line) for row, line in zip(which, opened.lines.read(which), strict=True)]


def _has_duplicates(ordered: np.ndarray) -> bool:
    """Whether sorted ids hold one twice: the usual case, every id distinct, needs no array more."""
    return bool((ordered[1:] == ordered[:-1]).any())


def _first_positions(keys: np.ndarray) -> np.ndarray:
    """For each position, the first position that holds the same id, given each id as the
    uint64 its 16 hex digits spell: sorting those is exact and costs a fraction of hashing the
    strings."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    first = np.empty(len(keys), dtype=np.int64)
    first[order] = np.repeat(order[starts], np.diff(np.r_[starts, len(keys)]))
    return first


def _id_numbers(ids: pa.ChunkedArray) -> np.ndarray:
    """Each id's 16 hex digits as the uint64 they spell, read from the Arrow buffers."""
    digits = np.concatenate([_fixed_width_bytes(chunk, DIGEST_CHARS) for chunk in ids.chunks]) if ids.num_chunks else np.empty((0, DIGEST_CHARS), np.uint8)
    nibbles = _HEX_VALUE[digits]
    packed = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]  # 8 bytes a row, most significant first
    return np.ascontiguousarray(packed).view(">u8").ravel()


def _fixed_width_bytes(strings: pa.Array, width: int) -> np.ndarray:
    """The bytes of strings that are all `width` long, one row each."""
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int32)[strings.offset : strings.offset + len(strings) + 1]
    data = np.frombuffer(strings.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    return data.reshape(len(strings), width)


def _finish(
    path: Path,
    opened: _Source,
    n_read: int,
    canonical: pa.Table | None,
    ordered: np.ndarray,
    rejects: dict[str, list[Any]],
    encoded: Future[memoryview] | None,
    version: Future[str] | None,
) -> LoadedDataset:
    """Drop duplicate problems (the first one wins, the others become rejects), as the per-row loader does.
    `canonical`: the rows (None where they were not kept, and none is a duplicate); `ordered`:
    their ids as numbers (`_id_numbers`), sorted; `encoded` and `version`: the prompts file and
    the content version of `canonical`, where they were made on the way (kept where no duplicate
    is dropped)."""
    file = str(path)
    kept, n_duplicates = canonical, 0
    if canonical is not None and _has_duplicates(ordered):
        first = _first_positions(_id_numbers(canonical.column("id")))
        duplicate = first != np.arange(len(first))
        row_of = _numpy(canonical.column("row"))
        ids = canonical.column("id")
        positions = np.flatnonzero(duplicate).tolist()
        for position, record in zip(positions, _records(opened, [int(row_of[p]) for p in positions]), strict=True):
            error = DatasetError(file, f"duplicate of row {int(row_of[first[position]])} (id {ids[position].as_py()})", int(row_of[position]), "problem")
            add_reject(rejects, error, raw_text(record))
        n_duplicates = len(positions)
        kept = canonical.take(_int64(np.flatnonzero(~duplicate)))
    n_bad = len(rejects["row"]) - n_duplicates
    if kept is not None and kept.num_rows == 0:
        raise all_rejected(file, n_read, rejects)
    warn_dropped(file, n_bad, n_duplicates, n_read)
    if rejects["row"]:
        order = sorted(range(len(rejects["row"])), key=lambda i: rejects["row"][i])
        reject_table = pa.Table.from_pydict({name: [values[i] for i in order] for name, values in rejects.items()}, schema=REJECTS_SCHEMA)
    else:
        reject_table = pa.Table.from_arrays([pa.nulls(0, field.type) for field in REJECTS_SCHEMA], schema=REJECTS_SCHEMA)
    prompts = encoded.result() if encoded is not None and not n_duplicates else None
    digest = version.result() if version is not None and not n_duplicates else None
    return LoadedDataset(table=kept, rejects=reject_table, n_read=n_read, duplicates=n_duplicates, encoded=prompts, version=digest)
