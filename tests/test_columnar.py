"""Tests for gainrl_ops.data.columnar: the column-wise loader gives exactly the per-row loader's
canonical table and rejects on awkward text, and stays off the slow conversions it avoids."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq
import pytest

from gainrl_ops.core import storage
from gainrl_ops.data import columnar
from gainrl_ops.data.columnar import PYTHON_WHITESPACE, load_columnar
from gainrl_ops.data.content import dataset_version
from gainrl_ops.data.datasets import (
    FieldMap,
    LoadedDataset,
    RowConverter,
    load_rows,
)
from gainrl_ops.data.streams import stem

# Text that JSON escapes, that Python strips but other libraries may not, or that normalises.
AWKWARD = ['say "hi"', "back\\slash", "tab\there", "nul\x00end", "unit\x1fsep", "é", "e\u0301", "line\u2028sep", "日本",
           "😀", "del\x7f", "a/b", "two  spaces", " padded "]


def awkward_rows() -> list[dict]:
    rows = [{"problem": f"Q{i}: {text}", "answer": f" {i} ", "note": text, "flag": i % 2 == 0, "count": i - 5}
            for i, text in enumerate(AWKWARD)]
    extra = [
        ("\x1c", "1"),  # blank to str.strip(): rejected
        ("\u3000 \x85", "1"),  # blank too
        ("Q: padded answer", "\x1c7\x1c"),
        ("Q: ideographic space", "\u30008\u3000"),
        ("  Q0: say \"hi\" ", "9"),  # the same problem as row 0 once normalised: a duplicate
        ("Q: blank answer", " \t"),
    ]
    rows += [{"problem": problem, "answer": answer, "note": "x", "flag": True, "count": 0} for problem, answer in extra]
    return rows


def both(path: Path) -> tuple[LoadedDataset | None, LoadedDataset]:
    converter = RowConverter(str(path), FieldMap(), stem(path), explicit_source=False)
    return load_columnar(path, FieldMap(), "skip", None, stem(path), converter), load_rows(path, FieldMap(), "skip", None, stem(path))


def test_python_whitespace_is_what_str_isspace_says() -> None:
    assert set(PYTHON_WHITESPACE) == {chr(c) for c in range(0x110000) if chr(c).isspace()}


def test_awkward_json_lines_load_as_row_by_row(tmp_path: Path) -> None:
    rows = awkward_rows()
    path = tmp_path / "awkward.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    fast, slow = both(path)
    assert fast is not None, "a regular JSONL file takes the column-wise path"
    assert fast.table.equals(slow.table) and fast.rejects.equals(slow.rejects)
    assert (fast.n_read, fast.duplicates) == (slow.n_read, slow.duplicates) == (len(rows), 1)
    assert json.loads(fast.table.column("metadata")[3].as_py())["note"] == "nul\x00end"
    assert {r["reason"] for r in fast.rejects.to_pylist()} >= {"empty problem", "empty answer"}


def plain_rows(start: int, n: int) -> list[dict]:
    return [{"problem": f"Plain problem {i}?", "answer": str(i), "note": "n", "flag": False, "count": i} for i in range(start, start + n)]


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """JSON Lines read in blocks of 4 KiB (many parts), recording each open's `whole`."""
    monkeypatch.setattr(columnar, "_JSON_BLOCK", pa_json.ReadOptions(block_size=4096))
    opened: list[bool] = []
    open_ = columnar._open

    def recording(path: Path, lines: object, whole: bool) -> object:
        opened.append(whole)
        return open_(path, lines, whole)

    monkeypatch.setattr(columnar, "_open", recording)
    return opened


def test_json_lines_read_block_by_block_load_as_row_by_row(tmp_path: Path, small_blocks: list[bool]) -> None:
    rows = plain_rows(0, 200) + awkward_rows() + plain_rows(150, 100)  # bad rows and duplicates in later blocks
    path = tmp_path / "blocks.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    fast, slow = both(path)
    assert small_blocks == [False] and fast is not None
    assert fast.table.equals(slow.table) and fast.rejects.equals(slow.rejects)
    assert fast.duplicates == slow.duplicates == 51


def test_the_prompts_file_and_version_made_on_the_way_are_the_table_s(tmp_path: Path, small_blocks: list[bool], monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks done on several threads are encoded in row order, in whole row groups; with a
    duplicate or a row converted one by one, neither is kept (the caller makes them again)."""
    monkeypatch.setattr(storage, "ROW_GROUP_ROWS", 64)
    path = tmp_path / "plain.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in plain_rows(0, 500)), encoding="utf-8")
    fast, _ = both(path)
    assert fast is not None and fast.encoded is not None
    written = pq.ParquetFile(pa.BufferReader(fast.encoded))
    assert written.read().equals(fast.table) and fast.version == dataset_version(fast.table)
    assert [written.metadata.row_group(i).num_rows for i in range(written.num_row_groups)] == [64] * 7 + [52]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in plain_rows(0, 300) + awkward_rows()), encoding="utf-8")
    fast, slow = both(path)
    assert fast is not None and fast.table.equals(slow.table)
    assert fast.encoded is None and fast.version is None


@pytest.mark.parametrize(("rows", "streamed"), [
    (plain_rows(0, 500), True),
    (plain_rows(0, 300) + plain_rows(100, 50), False),  # duplicates in later blocks
    (plain_rows(0, 300) + awkward_rows(), False),  # rows converted one by one, and a duplicate
], ids=["regular", "duplicates", "awkward"])
def test_a_load_that_keeps_no_table_writes_what_the_table_holds(
    tmp_path: Path, small_blocks: list[bool], monkeypatch: pytest.MonkeyPatch, rows: list[dict], streamed: bool
) -> None:
    """keep_table=False: a regular file's rows go into the prompts file part by part and its
    version is made from the parts and that file (several row groups); wherever rows must be
    converted one by one or dropped, the table comes back, the same as a kept one."""
    monkeypatch.setattr(storage, "ROW_GROUP_ROWS", 64)
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    converter = RowConverter(str(path), FieldMap(), stem(path), explicit_source=False)
    loaded = load_columnar(path, FieldMap(), "skip", None, stem(path), converter, keep_table=False)
    _, slow = both(path)
    assert loaded is not None and loaded.rejects.equals(slow.rejects) and loaded.duplicates == slow.duplicates
    assert loaded.rows == slow.table.num_rows
    if streamed:
        assert loaded.table is None and loaded.version == dataset_version(slow.table)
        assert pq.read_table(pa.BufferReader(loaded.encoded)).equals(slow.table)
    else:
        assert loaded.table is not None and loaded.table.equals(slow.table)


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst"])
def test_files_are_checked_and_read_in_blocks_compressed_or_not(
    tmp_path: Path, small_blocks: list[bool], monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    """Blocks of 7 bytes cut characters, lines and escapes apart: the result is still the per-row one."""
    monkeypatch.setattr(columnar, "_SCAN_BYTES", 7)
    rows = plain_rows(0, 50) + awkward_rows() + plain_rows(30, 50)
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    path = tmp_path / f"blocks{suffix}"
    with pa.output_stream(str(path), compression={".gz": "gzip", ".zst": "zstd"}.get(path.suffix)) as out:
        out.write(data)
    fast, slow = both(path)
    assert small_blocks == [False] and fast is not None
    assert fast.table.equals(slow.table) and fast.rejects.equals(slow.rejects)
    assert fast.duplicates == 21 and fast.table.column("source").unique().to_pylist() == ["blocks"]


@pytest.mark.parametrize(("first", "rest"), [
    ({"note": None}, {}),  # a column null throughout the first block, text later
    ({}, {"late": "x"}),  # a column that the first block does not have
], ids=["null-first", "new-column"])
def test_a_file_whose_first_block_does_not_settle_the_types_is_read_whole(
    tmp_path: Path, small_blocks: list[bool], first: dict, rest: dict
) -> None:
    rows = [{**r, **first} for r in plain_rows(0, 100)] + [{**r, **rest} for r in plain_rows(100, 100)]
    path = tmp_path / "late.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fast, slow = both(path)
    assert small_blocks == [False, True] and fast is not None
    assert fast.table.equals(slow.table) and fast.rejects.equals(slow.rejects)


def test_awkward_parquet_loads_as_row_by_row(tmp_path: Path) -> None:
    rows = awkward_rows()
    rows[2]["note"] = None  # a present null, which the metadata keeps
    pq.write_table(pa.Table.from_pylist(rows), path := tmp_path / "awkward.parquet")
    fast, slow = both(path)
    assert fast is not None
    assert fast.table.equals(slow.table) and fast.rejects.equals(slow.rejects)
    assert json.loads(fast.table.column("metadata")[2].as_py())["note"] is None


def test_dataset_version_digests_every_value_in_order() -> None:
    table = pa.Table.from_batches([
        pa.record_batch({"id": ["a", ""], "problem": ["x", "é"], "answer": ["", "1"]}),
        pa.record_batch({"id": ["c"], "problem": ["日本"], "answer": ["2"]}),
    ])
    reference = hashlib.sha256()
    for column in ("id", "problem", "answer"):
        values = [value.encode("utf-8") for value in table.column(column).to_pylist()]
        reference.update(b"".join(len(value).to_bytes(8, "little") for value in values) + b"".join(values) + b"\x01")
    assert dataset_version(table) == reference.hexdigest()[:16]
    assert dataset_version(table.slice(1)) != dataset_version(table)
    large = table.cast(pa.schema([(name, pa.large_string()) for name in table.column_names]))
    assert dataset_version(large) == dataset_version(table)


def test_loading_a_regular_file_does_not_import_pandas(tmp_path: Path) -> None:
    """pyarrow imports pandas (most of a second) on its first conversion between Python and
    Arrow objects; the column-wise path makes none for a file without bad rows."""
    path = tmp_path / "plain.jsonl"
    path.write_text("".join(json.dumps({"problem": f"What is {i} + {i}?", "answer": 2 * i, "topic": "add", "ok": True}) + "\n"
                            for i in range(500)))
    program = ("import sys; from gainrl_ops.data.datasets import load_dataset; "
               "load_dataset(sys.argv[1]); load_dataset(sys.argv[1], keep_table=False); print('pandas' in sys.modules)")
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", program, str(path)], capture_output=True, text=True, timeout=120, env=env, check=True)
    assert done.stdout.strip() == "False"
