"""Load a user's dataset, whatever its format and field names, into one canonical table.

Every later stage (tokenizing, angle scoring, ranking, GRPO sampling) reads the same
columns: a content-derived `id`, the `problem` text, a string `answer`, the `source`,
an optional `difficulty`, the remaining fields as JSON `metadata`, and the `row` it came
from. Bad rows are reported with file, row and field, so a user can find and fix them;
in "skip" mode they are collected in a rejects table instead of stopping the load.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from gainrl_ops.core.storage import write_bytes_atomic, write_parquet_atomic
from gainrl_ops.data.answers import final_answer
from gainrl_ops.data.columnar import load_columnar
from gainrl_ops.data.errors import DatasetError
from gainrl_ops.data.ids import problem_id
from gainrl_ops.data.prompts_file import encode_prompts
from gainrl_ops.data.records import (
    ANSWER_FIELDS,
    CANONICAL_SCHEMA,
    DIFFICULTY_FIELDS,
    PROBLEM_FIELDS,
    REJECTS_SCHEMA,
    ROW_FIELD,
    SOLUTION_FIELDS,
    SOURCE_FIELDS,
    TOO_DEEP,
    FieldMap,
    LoadedDataset,
    Unreadable,
    add_reject,
    all_rejected,
    new_rejects,
    parse_jsonl_line,
    raw_text,
    to_json,
    undecodable,
    warn_dropped,
)
from gainrl_ops.data.streams import codec, format_suffix, open_binary, stem

_BATCH_ROWS = 8192  # Arrow rows converted to Python at a time: bounds memory on large files.
_MISSING = object()  # `_lookup` result for an absent field (None means a present null).
_LEVEL_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def load_dataset(
    path: str | Path,
    *,
    fields: FieldMap = FieldMap(),
    on_error: Literal["fail", "skip"] = "fail",
    source: str | None = None,
    keep_table: bool = True,
) -> LoadedDataset:
    """Read a JSON, JSONL/NDJSON (either one also gzip- or zstd-compressed: `.jsonl.gz`,
    `.json.gz`, `.jsonl.zst`), Parquet file or a `datasets.save_to_disk` folder into the
    canonical table.

    `on_error="fail"` raises the first bad row's DatasetError; `"skip"` records bad rows
    in `rejects` and goes on. Duplicated problems are always dropped (first one wins) and
    recorded in `rejects`: they would otherwise be scored and sampled twice. A file with
    no usable row raises DatasetError in both modes, since there would be nothing to score.
    `source` overrides the per-row source (`data_source`/`source` field, else file stem).
    `keep_table=False` lets a large regular file stream into its prompts file (`encoded`) without
    the table being kept (`table` is None then); the table is kept wherever it had to be made.
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', not {on_error!r}")
    if source is not None and not source.strip():
        raise ValueError("source must be a non-empty string or None")
    path = Path(path)
    file = str(path)
    if not path.exists():
        raise DatasetError(file, "no such file or directory")
    default_source = source or (path.resolve().name if path.is_dir() else stem(path))
    converter = RowConverter(file, fields, default_source, explicit_source=source is not None)
    columnar = load_columnar(path, fields, on_error, source, default_source, converter, keep_table)
    if columnar is not None:
        return columnar
    return load_rows(path, fields, on_error, source, default_source)


def load_rows(path: Path, fields: FieldMap, on_error: str, source: str | None, default_source: str) -> LoadedDataset:
    """`load_dataset` one row at a time: every format and layout, and the reference for the
    column-wise loader (`columnar.load_columnar`), which must give the same result."""
    file = str(path)
    converter = RowConverter(file, fields, default_source, explicit_source=source is not None)

    columns: dict[str, list[Any]] = {name: [] for name in CANONICAL_SCHEMA.names}
    rejects = new_rejects()
    first_row_of_id: dict[str, int] = {}
    n_read = duplicates = 0
    for row, record in _read_records(path, file):
        n_read += 1
        try:
            canonical = converter.convert(row, record)
        except DatasetError as exc:
            if on_error == "fail":
                raise
            add_reject(rejects, exc, raw_text(record))
            continue
        first_row = first_row_of_id.setdefault(canonical["id"], row)
        if first_row != row:
            duplicates += 1
            reason = f"duplicate of row {first_row} (id {canonical['id']})"
            add_reject(rejects, DatasetError(file, reason, row, "problem"), raw_text(record))
            continue
        for name, value in canonical.items():
            columns[name].append(value)

    if n_read == 0:
        raise DatasetError(file, "no rows to load (the dataset is empty)")
    n_bad = len(rejects["row"]) - duplicates
    if not columns["id"]:
        raise all_rejected(file, n_read, rejects)
    warn_dropped(file, n_bad, duplicates, n_read)
    return LoadedDataset(
        table=pa.Table.from_pydict(columns, schema=CANONICAL_SCHEMA),
        rejects=pa.Table.from_pydict(rejects, schema=REJECTS_SCHEMA),
        n_read=n_read,
        duplicates=duplicates,
    )


def write_dataset(loaded: LoadedDataset, prompts: Path, rejects: Path) -> dict[str, Path]:
    """Write the prompts and rejects tables, each atomically so a concurrent reader never sees
    a half-written file; the prompts file is `loaded.encoded` where the loader made it.
    Returns {"prompts": ..., "rejects": ...}."""
    prompts_file = write_bytes_atomic(loaded.encoded if loaded.encoded is not None else encode_prompts(loaded.table), prompts)
    return {"prompts": prompts_file, "rejects": write_parquet_atomic(loaded.rejects, rejects)}


class RowConverter:
    """Turns one raw record into a canonical row, raising DatasetError for a bad one.

    An auto-detected field is chosen on the first row that has a candidate and then kept
    for the whole file, so a later row that lacks it is reported as missing instead of
    silently reading its answer from another field.
    """

    def __init__(self, file: str, fields: FieldMap, default_source: str, explicit_source: bool):
        self._file = file
        self._fields = fields
        self._default_source = default_source
        self._explicit_source = explicit_source
        self._chosen: dict[str, str] = {}

    def choose(self, role: str, field: str) -> None:
        self._chosen[role] = field

    def convert(self, row: int, record: Any) -> dict[str, Any]:
        if isinstance(record, Unreadable):
            raise DatasetError(self._file, record.reason, row, record.field)
        if not isinstance(record, dict):
            raise DatasetError(self._file, f"not an object ({type(record).__name__})", row, ROW_FIELD)
        extra: dict[str, Any] = {}
        consumed: list[str] = []

        problem_field, value = self._field(row, record, "problem", self._fields.problem, PROBLEM_FIELDS)
        problem = self._problem_text(row, problem_field, value, extra)
        consumed.append(problem_field)

        answer, answer_field = self._answer(row, record, extra)
        if answer_field is not None:
            consumed.append(answer_field)

        source, source_field = self._source(row, record)
        if source_field is not None:
            consumed.append(source_field)
        difficulty, difficulty_fields = _difficulty(record)
        consumed += difficulty_fields

        metadata = record
        for name in consumed:  # `_without` copies, so the caller's record is not modified
            metadata = _without(metadata, name)
        for key, value in extra.items():  # the row's own fields win over derived ones
            metadata.setdefault(key, value)
        try:
            metadata_json = to_json(metadata)
        except RecursionError:
            raise DatasetError(self._file, TOO_DEEP, row, "metadata") from None
        return {
            "id": problem_id(problem),
            "problem": problem,
            "answer": answer,
            "source": source,
            "difficulty": difficulty,
            "metadata": metadata_json,
            "row": row,
        }

    def _field(
        self, row: int, record: dict[str, Any], role: str, named: str | None, candidates: tuple[str, ...]
    ) -> tuple[str, Any]:
        """The (field name, value) that plays `role` in this record."""
        name = named or self._chosen.get(role)
        if name is None:
            name = next((c for c in candidates if _lookup(record, c) is not _MISSING), None)
            if name is None:
                raise DatasetError(self._file, f"missing (looked for {', '.join(candidates)})", row, role)
            self._chosen[role] = name
        value = _lookup(record, name)
        if value is _MISSING:
            raise DatasetError(self._file, "missing", row, name)
        return name, value

    def _problem_text(self, row: int, field: str, value: Any, extra: dict[str, Any]) -> str:
        if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
            value = self._chat_question(row, field, value, extra)
        text = self._text(row, field, value)
        if not text.strip():
            raise DatasetError(self._file, "empty problem", row, field)
        return text

    def _chat_question(
        self, row: int, field: str, messages: list[dict[str, Any]], extra: dict[str, Any]
    ) -> Any:
        """The verl layout: the question is the last user message; a system message is kept
        as `system_prompt` (the angle score needs it), other turns as `chat_history`."""
        users = [m for m in messages if m.get("role") == "user"]
        if not users:
            raise DatasetError(self._file, "chat prompt has no user message", row, field)
        question = users[-1]
        system = next((m for m in messages if m.get("role") == "system"), None)
        if system is not None:
            extra["system_prompt"] = system.get("content")
        history = [m for m in messages if m is not question and m is not system]
        if history:
            extra["chat_history"] = history
        return question.get("content")

    def _answer(self, row: int, record: dict[str, Any], extra: dict[str, Any]) -> tuple[str, str | None]:
        """(answer, the field it consumed): the answer field when it has a value, else the final
        answer of a worked solution (after the last '####', else the last \\boxed{...}), with
        where it came from recorded in the metadata as `answer_source`."""
        name = self._fields.answer or self._chosen.get("answer")
        if name is None:
            name = next((c for c in ANSWER_FIELDS if _lookup(record, c) is not _MISSING), None)
            if name is not None:
                self._chosen["answer"] = name
        value = _MISSING if name is None else _lookup(record, name)
        if value is not _MISSING and value is not None:
            return self._answer_text(row, name, value, extra), name
        for field in SOLUTION_FIELDS:
            text = _lookup(record, field)
            if isinstance(text, str) and (found := final_answer(text)) is not None and found.text:
                extra["answer_source"] = f"{field}: {found.form}"
                return found.text, None
        looked = f"no final answer ('#### x' or \\boxed{{x}}) in {', '.join(SOLUTION_FIELDS)}"
        if value is None:
            raise DatasetError(self._file, f"null value, and {looked}", row, name)
        raise DatasetError(self._file, f"missing (looked for {', '.join(ANSWER_FIELDS)}), and {looked}", row, name or "answer")

    def _answer_text(self, row: int, field: str, value: Any, extra: dict[str, Any]) -> str:
        if isinstance(value, float):
            if not math.isfinite(value):
                raise DatasetError(self._file, f"not a finite number ({value})", row, field)
            value = str(int(value)) if value.is_integer() else repr(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        text = self._text(row, field, value)
        if (found := final_answer(text)) is not None:
            extra["solution"] = text
            extra["answer_source"] = f"{field}: {found.form}"
            text = found.text
        text = text.strip()
        if not text:
            raise DatasetError(self._file, "empty answer", row, field)
        return text

    def _source(self, row: int, record: dict[str, Any]) -> tuple[str, str | None]:
        """(source, field it came from); the explicit argument wins, the file stem is the fallback."""
        if self._explicit_source:
            return self._default_source, None
        if self._fields.source is not None:
            name, value = self._field(row, record, "source", self._fields.source, ())
            text = self._text(row, name, value).strip()
            if not text:
                raise DatasetError(self._file, "empty source", row, name)
            return text, name
        for name in SOURCE_FIELDS:
            value = record.get(name)
            if isinstance(value, str) and value.strip():
                return value.strip(), name
        return self._default_source, None

    def _text(self, row: int, field: str, value: Any) -> str:
        """`value` as text, or the DatasetError that says why it is not."""
        if value is None:
            raise DatasetError(self._file, "null value", row, field)
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(self._file, undecodable(exc), row, field) from None
        if not isinstance(value, str):
            raise DatasetError(self._file, f"not text ({type(value).__name__})", row, field)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise DatasetError(self._file, "invalid Unicode (lone surrogate)", row, field) from None
        return value


def _difficulty(record: dict[str, Any]) -> tuple[float | None, list[str]]:
    """(difficulty, fields it accounts for): the first number, or number in a string like
    "Level 3". Null fields are accounted for too; unparsable ones stay in metadata."""
    accounted = [name for name in DIFFICULTY_FIELDS if name in record and record[name] is None]
    for name in DIFFICULTY_FIELDS:
        value = record.get(name)
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value), [*accounted, name]
        if isinstance(value, str) and (match := _LEVEL_NUMBER.search(value)):
            return float(match.group()), [*accounted, name]
    return None, accounted


def _lookup(record: dict[str, Any], path: str) -> Any:
    """The value at `path` (a top-level key, else a dotted path into nested objects)."""
    if path in record:
        return record[path]
    node: Any = record
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _without(record: dict[str, Any], path: str) -> dict[str, Any]:
    """A shallow copy of `record` without the value at `path`; emptied parents go too."""
    if path in record:
        return {k: v for k, v in record.items() if k != path}
    head, _, rest = path.partition(".")
    if not rest or not isinstance(record.get(head), dict):
        return dict(record)
    inner = _without(record[head], rest)
    out = {k: v for k, v in record.items() if k != head}
    if inner:
        out[head] = inner
    return out


def _read_records(path: Path, file: str) -> Iterator[tuple[int, Any]]:
    """(row index, record or Unreadable) for each row, by format."""
    if path.is_dir():
        return _iter_saved_dataset(path, file)
    suffix = format_suffix(path)
    compressed = codec(path) is not None
    if suffix == ".json":
        return _iter_json(path, file)
    if suffix in (".jsonl", ".ndjson"):
        return _iter_jsonl(path, file)
    if suffix == ".parquet" and not compressed:
        return _iter_parquet(path, file)
    raise DatasetError(
        file,
        f"unsupported format {''.join(path.suffixes[-2:]) if compressed else path.suffix or '(no suffix)'!r}: expected "
        ".json, .jsonl, .ndjson (each also as .gz or .zst), .parquet or a folder written by datasets' save_to_disk",
    )


def _iter_jsonl(path: Path, file: str) -> Iterator[tuple[int, Any]]:
    """One record per line; the row index is the 0-based line number, so a user can find
    it in an editor. Bytes are decoded per line, so one bad line does not lose the file."""
    row = 0
    try:
        with open_binary(path) as f:
            for row, line in enumerate(f):
                if line.strip():
                    yield row, parse_jsonl_line(row, line)
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(file, f"unreadable from row {row} on: {exc}") from None


def _iter_json(path: Path, file: str) -> Iterator[tuple[int, Any]]:
    """A JSON list of objects, or {"data": [...]}. A `.json` file whose first line is an
    object on its own is JSON Lines (what `datasets.Dataset.to_json` writes) and read as such."""
    if _looks_like_json_lines(path):
        yield from _iter_jsonl(path, file)
        return
    try:
        with open_binary(path) as f:
            document = json.loads(f.read())  # a JSON document is parsed whole, compressed or not
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(file, f"unreadable: {exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(file, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise DatasetError(file, TOO_DEEP) from None
    if isinstance(document, dict) and isinstance(document.get("data"), list):
        document = document["data"]
    if not isinstance(document, list):
        expected = 'expected a JSON list of objects or {"data": [...]}'
        raise DatasetError(file, f"{expected}, not {type(document).__name__}")
    yield from enumerate(document)


def _looks_like_json_lines(path: Path) -> bool:
    """True if the first line is a complete JSON object and more lines follow
    (a one-line `{"data": [...]}` document is not JSON Lines)."""
    try:
        with open_binary(path) as f:
            if not isinstance(json.loads(f.readline().decode("utf-8-sig")), dict):
                return False
            return any(line.strip() for line in f)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, OSError, pa.ArrowException):
        return False  # read as one document, which reports the error


def _iter_parquet(path: Path, file: str) -> Iterator[tuple[int, Any]]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(file, f"not a readable Parquet file: {exc}") from None
    yield from _iter_arrow(parquet.iter_batches(batch_size=_BATCH_ROWS), file)


def _iter_saved_dataset(path: Path, file: str) -> Iterator[tuple[int, Any]]:
    """A folder from `Dataset.save_to_disk` or `DatasetDict.save_to_disk` (split "train",
    else the only split)."""
    import datasets  # noqa: PLC0415 - about 1 s to import; only save_to_disk folders need it

    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError as exc:
        raise DatasetError(file, f"not a folder written by datasets' save_to_disk ({exc})") from None
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if "train" in loaded:
            loaded = loaded["train"]
        elif len(splits) == 1:
            loaded = loaded[splits[0]]
        else:
            raise DatasetError(
                file,
                f"DatasetDict with splits {splits} and no 'train' split: pass the folder of one split "
                f"(e.g. {path / splits[0]})",
            )
    yield from _iter_arrow(loaded.with_format("arrow").iter(batch_size=_BATCH_ROWS), file)


def _iter_arrow(batches: Iterable[pa.Table | pa.RecordBatch], file: str) -> Iterator[tuple[int, Any]]:
    """Rows of Arrow batches as dicts. A string value that is not valid UTF-8 makes the
    whole batch fail to convert; then the batch is converted row by row to isolate it."""
    row = 0
    batch_iter = iter(batches)
    while True:
        try:
            batch = next(batch_iter, None)
        except pa.ArrowException as exc:
            raise DatasetError(file, f"unreadable from row {row} on: {exc}") from None
        if batch is None:
            return
        try:
            records = batch.to_pylist()
        except UnicodeDecodeError:
            records = [_arrow_row(batch.slice(i, 1)) for i in range(batch.num_rows)]
        for record in records:
            yield row, record
            row += 1


def _arrow_row(one: pa.Table | pa.RecordBatch) -> Any:
    """The single row of `one` as a dict, or Unreadable naming its undecodable column."""
    try:
        return one.to_pylist()[0]
    except UnicodeDecodeError:
        pass
    record: dict[str, Any] = {}
    errors: dict[str, UnicodeDecodeError] = {}
    for name, column in zip(one.column_names, one.columns, strict=True):
        try:
            record[name] = column.to_pylist()[0]
        except UnicodeDecodeError as exc:
            record[name] = "<undecodable>"
            errors[name] = exc
    bad_column, error = next(iter(errors.items()))  # the row failed, so one of its columns did
    return Unreadable(bad_column, undecodable(error), to_json(record))
