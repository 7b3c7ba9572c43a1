"""The pieces both dataset loaders share: the canonical and rejects tables, the field names
they look for, how a raw record is written as JSON, and how a dropped row is recorded.

`datasets.load_rows` (one row at a time, every format) and `columnar.load_columnar` (whole
columns, regular files) build the same `LoadedDataset` from them; the per-row converter, which
the column-wise loader hands its irregular rows to, reaches it as a `RecordConverter`.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from gainrl_ops.core import columns
from gainrl_ops.core.columns import arrow_schema
from gainrl_ops.data.errors import DatasetError

log = logging.getLogger(__name__)

CANONICAL_SCHEMA = arrow_schema(columns.PROMPT)
REJECTS_SCHEMA = arrow_schema(columns.REJECT)

# Candidate source fields, in order of preference, for fields the user did not name.
PROBLEM_FIELDS = ("problem", "question", "prompt", "input", "query", "instruction")
ANSWER_FIELDS = ("answer", "final_answer", "ground_truth", "reward_model.ground_truth")
# Worked solutions to take the final answer from when the answer itself is missing or null.
SOLUTION_FIELDS = ("solution", "answer", "response")
SOURCE_FIELDS = ("data_source", "source")
DIFFICULTY_FIELDS = ("difficulty", "level")

# Pseudo field names for rows that could not be read as an object at all.
LINE_FIELD = "<line>"
ROW_FIELD = "<row>"

_RAW_CHARS = 2000  # A reject keeps enough of the raw row to recognise it, not a whole document.
TOO_DEEP = "JSON nested too deeply to read"


@dataclass(frozen=True)
class FieldMap:
    """Which source fields hold the problem, answer and source; None means auto-detect.

    A name may be a dotted path into nested objects (e.g. "reward_model.ground_truth").
    """

    problem: str | None = None
    answer: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class LoadedDataset:
    """The canonical rows of one file, plus what was left out of them and why."""

    table: pa.Table | None  # CANONICAL_SCHEMA; unique ids, in file order. None: streamed into `encoded`, not kept
    rejects: pa.Table  # REJECTS_SCHEMA; bad rows (skip mode) and duplicates
    n_read: int  # rows read from the file (blank JSONL lines are not rows)
    duplicates: int  # rows dropped because their problem_id was already seen
    encoded: memoryview | None = field(default=None, repr=False, compare=False)  # `table` as its prompts file, where the loader made it
    version: str | None = field(default=None, compare=False)  # `content.dataset_version(table)`, where the loader computed it

    @property
    def rows(self) -> int:
        """Rows kept: the table's; every row read where the table was streamed (the loader does
        that only where every row is regular and none is a duplicate)."""
        return self.table.num_rows if self.table is not None else self.n_read


@dataclass(frozen=True)
class Unreadable:
    """A row that could not be decoded or parsed into a record; the reader reports it."""

    field: str
    reason: str
    raw: str


class RecordConverter(Protocol):
    """Turns one raw record (or an `Unreadable`) into a canonical row, raising DatasetError for a bad one."""

    def convert(self, row: int, record: Any) -> dict[str, Any]: ...

    def choose(self, role: str, field: str) -> None:
        """Read `role` ("problem", "answer") from `field` in every row, as if detected on the first."""


def _jsonable(value: Any) -> Any:
    """`value` with everything JSON cannot hold made representable: bytes as text where
    they are UTF-8, NaN/inf as null (strict JSON readers such as DuckDB reject them),
    anything else (dates, decimals) via str."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return str(value)
    return str(value)


def to_json(value: Any) -> str:
    """Compact, key-sorted JSON; readable non-ASCII unless it has lone surrogates
    (which Arrow strings cannot hold), then escaped."""
    text = json.dumps(_jsonable(value), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(_jsonable(value), sort_keys=True, separators=(",", ":"))
    return text


def raw_text(record: Any) -> str:
    """What a reject shows of its row, truncated."""
    try:
        text = record.raw if isinstance(record, Unreadable) else to_json(record)
    except RecursionError:
        text = f"<{TOO_DEEP}>"
    return text if len(text) <= _RAW_CHARS else text[:_RAW_CHARS] + "...(truncated)"


def new_rejects() -> dict[str, list[Any]]:
    """Empty rejects columns, filled by `add_reject`."""
    return {name: [] for name in REJECTS_SCHEMA.names}


def add_reject(rejects: dict[str, list[Any]], error: DatasetError, raw: str) -> None:
    rejects["file"].append(error.file)
    rejects["row"].append(error.row)
    rejects["field"].append(error.field)
    rejects["reason"].append(error.reason)
    rejects["raw"].append(raw)


def undecodable(exc: UnicodeDecodeError) -> str:
    return f"undecodable bytes (invalid UTF-8 at byte {exc.start}: {exc.reason})"


def all_rejected(file: str, read: int, rejects: dict[str, list[Any]]) -> DatasetError:
    """The error for a file none of whose rows loaded, naming the first reject."""
    first = f"row {rejects['row'][0]}, field {rejects['field'][0]!r}: {rejects['reason'][0]}"
    return DatasetError(file, f"no valid rows: all {read} rows were rejected (first: {first})")


def warn_dropped(file: str, bad: int, duplicates: int, read: int) -> None:
    if bad:
        log.warning("%s: skipped %d bad row(s) of %d; see the rejects table", file, bad, read)
    if duplicates:
        log.warning("%s: dropped %d duplicate problem(s) of %d rows", file, duplicates, read)


def parse_jsonl_line(row: int, line: bytes) -> Any:
    """The record on one line, or Unreadable saying why there is none."""
    try:
        text = line.decode("utf-8-sig" if row == 0 else "utf-8")
    except UnicodeDecodeError as exc:
        return Unreadable(LINE_FIELD, undecodable(exc), repr(line[:_RAW_CHARS]))
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        return Unreadable(LINE_FIELD, f"invalid JSON: {exc.msg} at column {exc.colno}", text.rstrip())
    except RecursionError:
        return Unreadable(LINE_FIELD, TOO_DEEP, text[:_RAW_CHARS])
