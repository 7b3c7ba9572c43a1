"""Tests for gainrl_ops.datasets: every supported format into one canonical table, bad rows
located by file/row/field, duplicates dropped, atomic writes, and the real bundled data."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SHARED_DATA

from gainrl_ops.data.datasets import (
    CANONICAL_SCHEMA,
    REJECTS_SCHEMA,
    DatasetError,
    FieldMap,
    LoadedDataset,
    load_dataset,
    problem_id,
    write_dataset,
)
from gainrl_ops.data.ids import problem_ids

GSM8K_VERL = SHARED_DATA / "gsm8k_test_verl.parquet"
AMC = SHARED_DATA / "amc_eval.json"

ROWS = [
    {"problem": "What is 2 + 3?", "answer": 5, "difficulty": 1, "topic": "add"},
    {"problem": "What is 7 * 6?", "answer": 42.0, "difficulty": 2.5, "topic": "mul"},
    {"problem": "Halve 5.", "answer": 2.5, "difficulty": None, "topic": "div"},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_json(path: Path, rows: list[dict]) -> Path:
    path.write_text(json.dumps(rows, indent=2))
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def assert_canonical(loaded: LoadedDataset, source: str) -> None:
    assert loaded.table.schema == CANONICAL_SCHEMA
    assert loaded.rejects.schema == REJECTS_SCHEMA
    assert loaded.n_read == 3 and loaded.duplicates == 0 and loaded.rejects.num_rows == 0
    rows = loaded.table.to_pylist()
    assert [r["problem"] for r in rows] == [r["problem"] for r in ROWS]
    assert [r["id"] for r in rows] == [problem_id(r["problem"]) for r in ROWS]
    assert [r["answer"] for r in rows] == ["5", "42", "2.5"]
    assert [r["difficulty"] for r in rows] == [1.0, 2.5, None]
    assert [r["row"] for r in rows] == [0, 1, 2]
    assert {r["source"] for r in rows} == {source}
    metadata = [json.loads(r["metadata"]) for r in rows]
    assert metadata == [{"topic": "add"}, {"topic": "mul"}, {"topic": "div"}]


# ---------------------------------------------------------------- formats


def test_json_list(tmp_path: Path) -> None:
    assert_canonical(load_dataset(write_json(tmp_path / "arith.json", ROWS)), "arith")


def test_json_data_wrapper(tmp_path: Path) -> None:
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"data": ROWS}))
    assert_canonical(load_dataset(path), "wrapped")


def test_json_file_holding_json_lines(tmp_path: Path) -> None:
    # `datasets.Dataset.to_json` writes JSON Lines under a .json name.
    assert_canonical(load_dataset(write_jsonl(tmp_path / "lines.json", ROWS)), "lines")


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson"])
def test_jsonl_with_blank_lines(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"arith{suffix}"
    path.write_text("\n" + "\n\n".join(json.dumps(r) for r in ROWS) + "\n  \n")
    loaded = load_dataset(path)
    assert loaded.n_read == 3
    assert loaded.table.column("row").to_pylist() == [1, 3, 5]  # 0-based line numbers
    assert loaded.table.column("answer").to_pylist() == ["5", "42", "2.5"]


def test_parquet(tmp_path: Path) -> None:
    assert_canonical(load_dataset(write_parquet(tmp_path / "arith.parquet", ROWS)), "arith")


def test_hf_dataset_and_dataset_dict(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(ROWS)
    ds.save_to_disk(str(tmp_path / "single"))
    assert_canonical(load_dataset(tmp_path / "single"), "single")

    other = datasets.Dataset.from_list([{"problem": "Unrelated?", "answer": "no"}])
    datasets.DatasetDict({"test": other, "train": ds}).save_to_disk(str(tmp_path / "with_train"))
    assert_canonical(load_dataset(tmp_path / "with_train"), "with_train")

    datasets.DatasetDict({"validation": ds}).save_to_disk(str(tmp_path / "one_split"))
    assert_canonical(load_dataset(tmp_path / "one_split"), "one_split")

    datasets.DatasetDict({"test": other, "validation": ds}).save_to_disk(str(tmp_path / "two_splits"))
    with pytest.raises(DatasetError, match=r"two_splits.*'test'.*'validation'"):
        load_dataset(tmp_path / "two_splits")


def test_ids_are_stable_across_formats_and_whitespace(tmp_path: Path) -> None:
    json_ids = load_dataset(write_json(tmp_path / "a.json", ROWS)).table.column("id")
    parquet_ids = load_dataset(write_parquet(tmp_path / "b.parquet", ROWS)).table.column("id")
    assert json_ids == parquet_ids
    assert problem_id("What is 2 + 3?") == problem_id("  What  is\n2 +\t3?\n")
    assert problem_id("caf\u00e9") == problem_id("cafe\u0301")  # NFC
    assert problem_id("What is 2 + 3?") != problem_id("What is 2 + 4?")
    assert len(problem_id("x")) == 16 and int(problem_id("x"), 16) >= 0


def test_an_id_is_the_md5_of_the_normalised_text_for_one_text_and_a_column() -> None:
    """The documented rule, reproducible anywhere: md5 of the NFC text, whitespace collapsed."""
    assert problem_id(" What is\t2 + 3? ") == hashlib.md5(b"What is 2 + 3?").hexdigest()[:16] == "105ac8fb5fb6444e"
    assert problem_id("Caf\u00e9\u3000costs 4") == hashlib.md5("Caf\u00e9 costs 4".encode()).hexdigest()[:16]
    texts = ["What is 2 + 3?", "  What  is\n2 +\t3?\n", "cafe\u0301", "a\u00a0b", "ok ", " ok", "a  b", "x\x1fy", "del\x7f", "", "\u65e5\u672c"]
    column = pa.chunked_array([pa.array(texts[:4]), pa.array(texts[4:])])
    assert problem_ids(column).to_pylist() == [problem_id(t) for t in texts]


def test_verl_layout(tmp_path: Path) -> None:
    rows = [
        {
            "data_source": "openai/gsm8k",
            "prompt": [
                {"role": "system", "content": "You are a careful solver."},
                {"role": "user", "content": "What is 2 + 3?"},
            ],
            "ability": "math",
            "reward_model": {"ground_truth": "5", "style": "rule"},
            "extra_info": {"index": 0, "split": "test"},
        },
        {
            "data_source": "openai/gsm8k",
            "prompt": [{"role": "user", "content": "What is 7 * 6?"}],
            "ability": "math",
            "reward_model": {"ground_truth": "42", "style": "rule"},
            "extra_info": {"index": 1, "split": "test"},
        },
    ]
    loaded = load_dataset(write_parquet(tmp_path / "verl.parquet", rows))
    out = loaded.table.to_pylist()
    assert [r["problem"] for r in out] == ["What is 2 + 3?", "What is 7 * 6?"]
    assert [r["id"] for r in out] == [problem_id(ROWS[0]["problem"]), problem_id(ROWS[1]["problem"])]
    assert [r["answer"] for r in out] == ["5", "42"]
    assert [r["source"] for r in out] == ["openai/gsm8k"] * 2
    meta = json.loads(out[0]["metadata"])
    assert meta == {
        "ability": "math",
        "extra_info": {"index": 0, "split": "test"},
        "reward_model": {"style": "rule"},
        "system_prompt": "You are a careful solver.",
    }
    assert "system_prompt" not in json.loads(out[1]["metadata"])


def test_gsm8k_solutions(tmp_path: Path) -> None:
    solution = "She sells 1000 + 234 = <<1000+234=1234>>1,234 eggs.\n#### 1,234"
    rows = [
        {"question": "How many eggs?", "answer": solution},
        {"question": "Big?", "answer": "#### 1,234,567"},
    ]
    loaded = load_dataset(write_jsonl(tmp_path / "gsm8k.jsonl", rows))
    assert loaded.table.column("answer").to_pylist() == ["1234", "1234567"]
    assert json.loads(loaded.table.column("metadata")[0].as_py()) == {"solution": solution, "answer_source": "answer: ####"}


def test_answer_fields_with_a_marker_load_alike_column_wise_and_row_by_row(tmp_path: Path) -> None:
    """The column-wise loader hands every answer with a marker of the answer parser to the
    per-row path, so both give the parsed answer; plain answers are kept as written."""
    answers = ["Work\n#### 1,234", "#### (1,2)", r"\fbox{3}", r"\boxed {\dfrac{1}{2}}", r"\dfrac{1}{3}", "5"]
    path = write_jsonl(tmp_path / "x.jsonl", [{"problem": f"Q{i}?", "answer": a} for i, a in enumerate(answers)])
    fast, slow = _both(path)
    assert fast is not None and fast.table.equals(slow.table)
    assert fast.table.column("answer").to_pylist() == ["1234", "(1,2)", "3", r"\frac{1}{2}", r"\dfrac{1}{3}", "5"]


def test_field_map_and_explicit_source(tmp_path: Path) -> None:
    rows = [{"q": "What is 2 + 3?", "gold": {"value": 5}, "problem": "decoy", "source": "s"}]
    path = write_jsonl(tmp_path / "custom.jsonl", rows)
    loaded = load_dataset(path, fields=FieldMap(problem="q", answer="gold.value"), source="mine")
    row = loaded.table.to_pylist()[0]
    assert (row["problem"], row["answer"], row["source"]) == ("What is 2 + 3?", "5", "mine")
    assert json.loads(row["metadata"]) == {"problem": "decoy", "source": "s"}
    by_field = load_dataset(path, fields=FieldMap(problem="q", answer="gold.value", source="problem"))
    assert by_field.table.column("source").to_pylist() == ["decoy"]


def test_level_difficulty_and_metadata_values(tmp_path: Path) -> None:
    rows = [
        {"problem": "A?", "answer": "1", "level": "Level 3", "tags": ["x", "y"], "score": float("nan")},
        {"problem": "B?", "answer": "2", "level": 4},
        {"problem": "C?", "answer": "3", "level": "Level ?"},
    ]
    loaded = load_dataset(write_json(tmp_path / "math.json", rows))
    assert loaded.table.column("difficulty").to_pylist() == [3.0, 4.0, None]
    metas = [json.loads(m) for m in loaded.table.column("metadata").to_pylist()]
    assert metas == [{"score": None, "tags": ["x", "y"]}, {}, {"level": "Level ?"}]


# ---------------------------------------------------------------- bad rows


def assert_bad_row(path: Path, row: int, field: str, reason: str, good: list[str]) -> None:
    """Fail mode raises an error naming file/row/field; skip mode rejects only that row."""
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    err = info.value
    assert (err.file, err.row, err.field) == (str(path), row, field)
    assert reason in err.reason
    assert str(err).startswith(f"{path}, row {row}, field '{field}': ")

    loaded = load_dataset(path, on_error="skip")
    assert loaded.table.column("problem").to_pylist() == good
    rejects = loaded.rejects.to_pylist()
    assert len(rejects) == 1
    assert (rejects[0]["file"], rejects[0]["row"], rejects[0]["field"]) == (str(path), row, field)
    assert reason in rejects[0]["reason"] and rejects[0]["raw"]


GOOD = [{"problem": "First?", "answer": "1"}, {"problem": "Third?", "answer": "3"}]


def with_bad(bad: dict) -> list[dict]:
    return [GOOD[0], bad, GOOD[1]]


def test_missing_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", with_bad({"problem": "Second?"}))
    assert_bad_row(path, 1, "answer", "missing", ["First?", "Third?"])


def test_missing_field_everywhere_names_the_candidates(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": "Second?", "answer": "2"}])
    with pytest.raises(DatasetError, match=r"row 0, field 'problem': missing \(looked for problem, question"):
        load_dataset(path)


def test_null_value(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", with_bad({"problem": "Second?", "answer": None}))
    assert_bad_row(path, 1, "answer", "null value", ["First?", "Third?"])


@pytest.mark.parametrize("value", [7, ["a"], {"a": 1}, True])
def test_non_text_problem(tmp_path: Path, value: object) -> None:
    path = write_json(tmp_path / "x.json", with_bad({"problem": value, "answer": "2"}))
    assert_bad_row(path, 1, "problem", "not text", ["First?", "Third?"])


@pytest.mark.parametrize("value", ["", "  \n\t"])
def test_empty_problem(tmp_path: Path, value: str) -> None:
    path = write_json(tmp_path / "x.json", with_bad({"problem": value, "answer": "2"}))
    assert_bad_row(path, 1, "problem", "empty problem", ["First?", "Third?"])


def test_empty_answer(tmp_path: Path) -> None:
    path = write_json(tmp_path / "x.json", with_bad({"problem": "Second?", "answer": "#### "}))
    assert_bad_row(path, 1, "answer", "empty answer", ["First?", "Third?"])


def test_undecodable_bytes_in_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    bad = b'{"problem": "Sec\xff\xfend?", "answer": "2"}'
    lines = [json.dumps(GOOD[0]).encode(), bad, json.dumps(GOOD[1]).encode()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert_bad_row(path, 1, "<line>", "undecodable bytes", ["First?", "Third?"])


def test_unparsable_json_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    bad = '{"problem": "Second?", "answer": '
    path.write_text(f"{json.dumps(GOOD[0])}\n{bad}\n{json.dumps(GOOD[1])}\n")
    assert_bad_row(path, 1, "<line>", "invalid JSON", ["First?", "Third?"])


def test_non_object_json_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(GOOD[0]) + "\n[1, 2]\n" + json.dumps(GOOD[1]) + "\n")
    assert_bad_row(path, 1, "<row>", "not an object", ["First?", "Third?"])


def test_undecodable_binary_in_parquet(tmp_path: Path) -> None:
    problems = pa.array([b"First?", b"Sec\xff\xfend?", b"Third?"], pa.binary())
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"problem": problems, "answer": ["1", "2", "3"]}), path)
    assert_bad_row(path, 1, "problem", "undecodable bytes", ["First?", "Third?"])


def test_invalid_utf8_in_parquet_string_column(tmp_path: Path) -> None:
    # A string column that is not valid UTF-8 (written by a lax producer): Arrow fails the
    # whole batch on conversion; the loader isolates the one bad row.
    binary = pa.array([b"First?", b"Sec\xff\xfend?", b"Third?"], pa.binary())
    strings = pa.Array.from_buffers(pa.string(), len(binary), binary.buffers())
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"problem": strings, "answer": ["1", "2", "3"]}), path)
    assert_bad_row(path, 1, "problem", "undecodable bytes", ["First?", "Third?"])


def test_chat_prompt_without_user_message(tmp_path: Path) -> None:
    bad = {"prompt": [{"role": "system", "content": "Be brief."}], "answer": "2"}
    rows = [{"prompt": [{"role": "user", "content": "First?"}], "answer": "1"}, bad]
    path = write_json(tmp_path / "x.json", rows)
    with pytest.raises(DatasetError, match=r"row 1, field 'prompt': chat prompt has no user message"):
        load_dataset(path)


def test_all_rows_bad_or_empty_file_raises(tmp_path: Path) -> None:
    rows = [{"problem": None, "answer": "1"}, {"problem": "", "answer": "2"}]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DatasetError, match=r"no valid rows: all 2 rows were rejected"):
        load_dataset(path, on_error="skip")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DatasetError, match=r"empty\.jsonl: no rows"):
        load_dataset(empty)
    with pytest.raises(DatasetError, match="no rows"):
        load_dataset(write_json(tmp_path / "empty.json", []))


def test_unsupported_and_missing_files(tmp_path: Path) -> None:
    csv = tmp_path / "data.csv"
    csv.write_text("problem,answer\n")
    with pytest.raises(DatasetError, match=r"data\.csv: unsupported format '\.csv'"):
        load_dataset(csv)
    with pytest.raises(DatasetError, match="nope.jsonl: no such file or directory"):
        load_dataset(tmp_path / "nope.jsonl")
    not_json = tmp_path / "broken.json"
    not_json.write_text("[{")
    with pytest.raises(DatasetError, match=r"broken\.json: not valid JSON"):
        load_dataset(not_json)
    with pytest.raises(DatasetError, match="expected a JSON list"):
        load_dataset(write_json(tmp_path / "obj.json", {"rows": []}))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_error"):
        load_dataset(csv, on_error="ignore")  # type: ignore[arg-type]


# ---------------------------------------------------------------- compressed inputs


def compress(path: Path, data: bytes) -> Path:
    """`data` written to `path`, compressed as its suffix says (.gz or .zst)."""
    with pa.output_stream(str(path), compression="gzip" if path.suffix == ".gz" else "zstd") as out:
        out.write(data)
    return path


JSONL_BYTES = b'{"problem": "What is 2 + 3?", "answer": 5}\n\n{"problem": "Caf\xc3\xa9 costs 4; two?", "answer": "8"}\n'
JSON_BYTES = b'[{"problem": "What is 2 + 3?", "answer": 5}, {"problem": "Caf\xc3\xa9 costs 4; two?", "answer": "8"}]'


@pytest.mark.parametrize(("name", "data"), [
    ("rows.jsonl.gz", JSONL_BYTES), ("rows.jsonl.zst", JSONL_BYTES), ("rows.ndjson.gz", JSONL_BYTES),
    ("rows.json.gz", JSON_BYTES), ("rows.json.zst", JSONL_BYTES),  # a .json file may hold JSON Lines
])
def test_compressed_files_load_as_their_plain_form(tmp_path: Path, name: str, data: bytes) -> None:
    plain = tmp_path / "plain" / name.rsplit(".", 1)[0]
    plain.parent.mkdir()
    plain.write_bytes(data)
    loaded = load_dataset(compress(tmp_path / name, data))
    assert loaded.table.equals(load_dataset(plain).table)
    assert loaded.table.column("problem").to_pylist() == ["What is 2 + 3?", "Caf\u00e9 costs 4; two?"]
    assert loaded.table.column("source").to_pylist() == ["rows", "rows"]  # the stem, without .jsonl.gz
    assert loaded.table.column("row").to_pylist() == ([0, 1] if data is JSON_BYTES else [0, 2])


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst", ".json.gz"])
@pytest.mark.parametrize(("bad", "field", "reason"), [
    (b'{"problem": "Second?", "answer": ', "<line>", "invalid JSON"),
    (b'{"problem": "Second?", "answer": null}', "answer", "null value"),
    (b'{"problem": "Sec\xff\xfend?", "answer": "2"}', "<line>", "undecodable bytes"),
], ids=["unparsable", "null-answer", "undecodable"])
def test_a_bad_row_inside_a_compressed_file_is_located_by_row_and_field(
    tmp_path: Path, suffix: str, bad: bytes, field: str, reason: str
) -> None:
    lines = [json.dumps(GOOD[0]).encode(), bad, json.dumps(GOOD[1]).encode()]
    path = compress(tmp_path / f"x{suffix}", b"\n".join(lines) + b"\n")
    assert_bad_row(path, 1, field, reason, ["First?", "Third?"])


def test_corrupt_or_unsupported_compressed_files_are_named(tmp_path: Path) -> None:
    whole = compress(tmp_path / "whole.jsonl.gz", b"".join(json.dumps(r).encode() + b"\n" for r in GOOD * 50))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])
    with pytest.raises(DatasetError, match=r"cut\.jsonl\.gz: unreadable from row \d+ on: "):
        load_dataset(cut)
    parquet = compress(tmp_path / "x.parquet.gz", b"PAR1")
    with pytest.raises(DatasetError, match=r"x\.parquet\.gz: unsupported format '\.parquet\.gz'"):
        load_dataset(parquet)


def test_error_pickles_with_its_fields() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(DatasetError("f.jsonl", "null value", 3, "answer")))
    assert (err.file, err.row, err.field, err.reason) == ("f.jsonl", 3, "answer", "null value")
    assert str(err) == "f.jsonl, row 3, field 'answer': null value"


# ---------------------------------------------------------------- duplicates and writing


@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_duplicates_first_wins(tmp_path: Path, on_error: str, caplog: pytest.LogCaptureFixture) -> None:
    rows = [*ROWS, {"problem": "  What is 2 +  3? ", "answer": "6"}, {"problem": "What is 7 * 6?", "answer": 42}]
    path = write_jsonl(tmp_path / "dups.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="gainrl_ops.datasets"):
        loaded = load_dataset(path, on_error=on_error)  # type: ignore[arg-type]
    assert loaded.n_read == 5 and loaded.duplicates == 2
    assert loaded.table.column("row").to_pylist() == [0, 1, 2]
    assert loaded.table.column("answer").to_pylist() == ["5", "42", "2.5"]
    rejects = loaded.rejects.to_pylist()
    assert [(r["row"], r["field"]) for r in rejects] == [(3, "problem"), (4, "problem")]
    assert rejects[0]["reason"] == f"duplicate of row 0 (id {problem_id('What is 2 + 3?')})"
    assert rejects[1]["reason"].startswith("duplicate of row 1 (id ")
    assert any("2 duplicate" in rec.getMessage() for rec in caplog.records)


def test_write_dataset(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", [*with_bad({"problem": None, "answer": "2"}), GOOD[0]])
    loaded = load_dataset(path, on_error="skip")
    out = tmp_path / "artifacts" / "x"
    paths = write_dataset(loaded, out / "prompts.parquet", out / "rejects.parquet")
    assert set(paths) == {"prompts", "rejects"}
    assert paths["prompts"] == out / "prompts.parquet" and paths["rejects"] == out / "rejects.parquet"
    assert pq.read_table(paths["prompts"]).equals(loaded.table)
    assert pq.read_table(paths["rejects"]).to_pylist() == loaded.rejects.to_pylist()
    assert len(loaded.rejects) == 2  # the null problem and the duplicate
    assert sorted(p.name for p in out.iterdir()) == ["prompts.parquet", "rejects.parquet"]


# ---------------------------------------------------------------- real data


@pytest.mark.skipif(not GSM8K_VERL.exists(), reason="shared GSM8K verl data not present")
def test_real_gsm8k_verl() -> None:
    loaded = load_dataset(GSM8K_VERL)
    assert loaded.n_read == 1319 and loaded.table.num_rows == 1319
    assert loaded.rejects.num_rows == 0 and loaded.duplicates == 0
    answers = loaded.table.column("answer").to_pylist()
    assert all(a.lstrip("-").replace(".", "", 1).isdigit() for a in answers)
    assert answers[0] == "18"
    assert set(loaded.table.column("source").to_pylist()) == {"openai/gsm8k"}
    assert len(set(loaded.table.column("id").to_pylist())) == 1319
    meta = json.loads(loaded.table.column("metadata")[0].as_py())
    assert meta["extra_info"]["answer"].endswith("#### 18") and meta["reward_model"] == {"style": "rule"}


@pytest.mark.skipif(not AMC.exists(), reason="shared AMC data not present")
def test_real_amc() -> None:
    loaded = load_dataset(AMC)
    assert loaded.rejects.num_rows == 0 and loaded.table.num_rows == loaded.n_read == 83
    assert loaded.table.column("answer")[0].as_py() == "142"
    assert all(d is not None for d in loaded.table.column("difficulty").to_pylist())
    assert "url" in json.loads(loaded.table.column("metadata")[0].as_py())


@pytest.mark.parametrize(("row", "answer", "source"), [
    ({"question": "Eggs?", "answer": None, "solution": "3 + 4 = 7 eggs.\n#### 7"}, "7", "solution: ####"),
    ({"question": "Eggs?", "solution": "Half of 1,000.\n#### 500"}, "500", "solution: ####"),
    ({"problem": "Area?", "solution": r"So it is $\boxed{\frac{1}{2}}$, not \boxed{1}... wait: $\boxed{\frac{\sqrt{3}}{4}}$."}, r"\frac{\sqrt{3}}{4}", "solution: \\boxed"),
    ({"problem": "Area?", "answer": None, "response": r"The answer is \boxed{12}."}, "12", "response: \\boxed"),
    ({"query": "Sum?", "answer": r"\boxed{x^{2}}"}, "x^{2}", "answer: \\boxed"),
    ({"problem": "Box?", "answer": None, "solution": r"Hence \fbox{$\dfrac{1}{2}$}."}, r"$\frac{1}{2}$", "solution: \\fbox"),
    ({"problem": "Big?", "answer": "Loss: #### -1,000,000.5 "}, "-1000000.5", "answer: ####"),
    ({"instruction": "Sum?", "answer": "5"}, "5", None),
    ({"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sum?"}], "answer": "5"}, "5", None),
])
def test_answers_are_found_where_datasets_keep_them(tmp_path: Path, row: dict, answer: str, source: str | None) -> None:
    loaded = load_dataset(write_jsonl(tmp_path / "x.jsonl", [row]))
    (got,) = loaded.table.to_pylist()
    assert got["answer"] == answer
    assert json.loads(got["metadata"]).get("answer_source") == source


def test_a_row_without_any_final_answer_is_rejected_with_the_reason(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", [
        {"problem": "A?", "answer": None, "solution": "Worked out, but never stated."},
        {"problem": "B?", "answer": None, "solution": "So #### 4"},
    ])
    loaded = load_dataset(path, on_error="skip")
    assert loaded.table.column("answer").to_pylist() == ["4"]
    (reject,) = loaded.rejects.to_pylist()
    assert (reject["row"], reject["field"]) == (0, "answer") and "no final answer" in reject["reason"]


@pytest.mark.skipif(not (SHARED_DATA / "gsm8k_test_verl.parquet").exists(), reason="shared GSM8K data not present")
def test_gsm8k_with_blank_answers_takes_them_from_the_solutions(tmp_path: Path) -> None:
    import pyarrow.compute as pc

    table = pq.read_table(SHARED_DATA / "gsm8k_test_verl.parquet")
    reference = load_dataset(SHARED_DATA / "gsm8k_test_verl.parquet")
    solutions = pc.struct_field(table.column("extra_info"), "answer")
    blanked = pa.table({
        "question": pc.struct_field(table.column("extra_info"), "question"),
        "answer": pa.nulls(table.num_rows, pa.string()),
        "solution": solutions,
    })
    pq.write_table(blanked, path := tmp_path / "gsm8k_blank.parquet")
    loaded = load_dataset(path)
    assert loaded.table.num_rows == table.num_rows
    assert loaded.table.column("answer").to_pylist() == reference.table.column("answer").to_pylist()
    assert {json.loads(m)["answer_source"] for m in loaded.table.column("metadata").to_pylist()} == {"solution: ####"}


def _both(path: Path, **kwargs) -> tuple:
    from gainrl_ops.data.columnar import load_columnar
    from gainrl_ops.data.datasets import RowConverter, load_rows

    fields, on_error = kwargs.get("fields", FieldMap()), kwargs.get("on_error", "fail")
    converter = RowConverter(str(path), fields, path.stem, explicit_source=False)
    fast = load_columnar(path, fields, on_error, None, path.stem, converter)
    slow = load_rows(path, fields, on_error, None, path.stem)
    return fast, slow


def test_the_columnar_loader_gives_the_per_row_result_on_generated_data(tmp_path: Path) -> None:
    from gainrl_ops.data.arithmetic import ArithmeticConfig, generate
    from gainrl_ops.data.arithmetic import write_jsonl as write_problems

    path = write_problems(generate(ArithmeticConfig(n_problems=3000, seed=5)), tmp_path / "arith.jsonl")
    rows = path.read_text().splitlines()
    rows[10] = json.dumps({"problem": " ", "answer": "1"})  # a bad row, handled row by row
    rows[11] = json.dumps({"problem": "Tom has  2\\tapples.", "answer": "2", "solution": "1 + 1\\n#### 2"})
    path.write_text("\n".join(rows) + "\n")
    fast, slow = _both(path, on_error="skip")
    assert fast is not None, "a regular JSONL file takes the column-wise path"
    assert fast.table.equals(slow.table) and fast.rejects.equals(slow.rejects)
    assert (fast.n_read, fast.duplicates) == (slow.n_read, slow.duplicates) and slow.duplicates > 0
    pq.write_table(pa.Table.from_pylist([json.loads(r) for r in rows if "difficulty" in r]), parquet := tmp_path / "arith.parquet")
    fast, slow = _both(parquet)
    assert fast is not None and fast.table.equals(slow.table)


@pytest.mark.skipif(not GSM8K_VERL.exists(), reason="shared GSM8K data not present")
def test_the_verl_layout_is_read_row_by_row(tmp_path: Path) -> None:
    fast, slow = _both(GSM8K_VERL)
    assert fast is None and slow.table.num_rows == 1319


@pytest.mark.parametrize("duplicate", [False, True], ids=["regular", "with-duplicate"])
def test_prepare_dataset_streams_a_file_to_its_prompts_and_reads_them_back_from_there(tmp_path: Path, duplicate: bool) -> None:
    """The prompts of a prepared dataset are the stored file's, equal to the loaded table; its
    version is the table's, whether the rows were streamed (regular file) or kept (a duplicate)."""
    from gainrl_ops.core.layout import Layout
    from gainrl_ops.data.content import dataset_version
    from gainrl_ops.data.sources import DatasetSource, prepare_dataset

    rows = [{"problem": f"What is {i} + {i}?", "answer": str(2 * i), "topic": "add"} for i in range(300)]
    path = write_jsonl(tmp_path / "train.jsonl", rows + rows[:1] if duplicate else rows)
    layout = Layout(tmp_path / "root")
    prepared, label = prepare_dataset(DatasetSource(path=str(path), name="train"), layout)
    expected = load_dataset(path).table
    assert (prepared.rows, label.rows, prepared.n_read, prepared.duplicates) == (300, 300, 300 + duplicate, int(duplicate))
    assert label.version == dataset_version(expected)
    assert prepared.prompts == layout.prompts("train", label.version)
    assert prepared.table.equals(expected) and pq.read_table(prepared.prompts).equals(expected)
    assert pq.read_table(layout.rejects("train", label.version)).num_rows == int(duplicate)
