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
import pyarrow.parquet as pq

from gainrl_ops.data.columnar import PYTHON_WHITESPACE, load_columnar
from gainrl_ops.data.datasets import FieldMap, LoadedDataset, dataset_version, load_rows

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
    return load_columnar(path, FieldMap(), "skip", None, path.stem), load_rows(path, FieldMap(), "skip", None, path.stem)


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
    reference = hashlib.blake2b(digest_size=32)
    for column in ("id", "problem", "answer"):
        for value in table.column(column).to_pylist():
            reference.update(value.encode("utf-8") + b"\x00")
        reference.update(b"\x01")
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
    program = "import sys; from gainrl_ops.data.datasets import load_dataset; load_dataset(sys.argv[1]); print('pandas' in sys.modules)"
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", program, str(path)], capture_output=True, text=True, timeout=120, env=env, check=True)
    assert done.stdout.strip() == "False"
