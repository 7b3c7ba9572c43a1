"""Fault injection: kills, corrupt artifacts, changed inputs and malformed files.

Each case expects a repair or a clear one-line error, never silently wrong scores and never
a half-written artifact. Runs on the tiny embedded model through the real `gainrl` CLI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gainrl_ops import cli
from gainrl_ops.core import layout as tree
from gainrl_ops.core.layout import Layout
from gainrl_ops.curriculum.catalog import catalog_problems, query, refresh_catalog
from gainrl_ops.data.datasets import load_dataset

N = 60
SHARD = 10  # six shards, six score parts


def problems(n: int = N, offset: int = 0) -> list[dict[str, object]]:
    return [{"problem": f"Tom has {i + offset} apples and buys {i % 7 + 2} more. How many now?", "answer": str(i + offset + i % 7 + 2)} for i in range(n)]


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def score_args(data: Path, model: Path, name: str = "math") -> list[str]:
    return ["score", "--data", str(data), "--model", str(model), "--name", name, "--shard-size", str(SHARD)]


def score(data: Path, model: Path, name: str = "math") -> None:
    assert cli.main(score_args(data, model, name)) == 0


def scores(home: Path, name: str = "math") -> pl.DataFrame:
    return query(home, f"SELECT id, c_intra, c_inter, angle_score, checkpoint FROM scores WHERE dataset = '{name}' ORDER BY id")


def run_killed(home: Path, args: list[str], patch: str) -> int:
    """`gainrl <args>` in a fresh interpreter that SIGKILLs itself where `patch` says."""
    program = textwrap.dedent(patch) + f"\nimport sys\nfrom gainrl_ops import cli\nsys.exit(cli.main({args!r}))\n"
    done = subprocess.run([sys.executable, "-c", program], env={**os.environ, "GAINRL_HOME": str(home)}, capture_output=True, timeout=300)
    return done.returncode


KILL_AFTER_PARTS = """
    import os, signal
    import gainrl_ops.scoring.scorer as scorer
    written, write = [], scorer.write_parquet_atomic
    def write_then_die(table, target):
        write(table, target)
        written.append(target)
        if len(written) == {parts}:
            os.kill(os.getpid(), signal.SIGKILL)
    scorer.write_parquet_atomic = write_then_die
"""
KILL_MID_WRITE = """
    import os, signal
    import pyarrow.parquet as pq
    real, parts = pq.write_table, []
    def write_half_then_die(table, where, **kwargs):
        if ".part-" in str(where):  # the temporary file of a score part
            parts.append(where)
            if len(parts) == 3:
                real(table.slice(0, table.num_rows // 2), where, **kwargs)
                os.kill(os.getpid(), signal.SIGKILL)
        real(table, where, **kwargs)
    pq.write_table = write_half_then_die
"""
KILL_DURING_SWAP = """
    import os, signal
    import gainrl_ops.scoring.publish as publish
    real = publish.replace_directory
    def die_mid_swap(source, target):
        if target.exists():
            target.rename(target.with_name(".retired-" + target.name))
        os.kill(os.getpid(), signal.SIGKILL)
    publish.replace_directory = die_mid_swap
"""


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "math.jsonl", problems())


@pytest.fixture
def clean(tmp_path_factory: pytest.TempPathFactory, dataset: Path, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> pl.DataFrame:
    """The scores of an uninterrupted run, in a storage root of their own."""
    home = tmp_path_factory.mktemp("clean")
    with monkeypatch.context() as patched:
        patched.setenv("GAINRL_HOME", str(home))
        score(dataset, tiny_model_path)
    return scores(home)


@pytest.mark.parametrize("patch", [
    pytest.param(KILL_AFTER_PARTS.format(parts=1), id="after-1-of-6-parts"),
    pytest.param(KILL_AFTER_PARTS.format(parts=4), id="after-4-of-6-parts"),
    pytest.param(KILL_MID_WRITE, id="in-the-middle-of-a-part"),
    pytest.param(KILL_DURING_SWAP, id="between-the-renames-of-the-swap"),
])
def test_a_killed_run_resumes_to_the_clean_result_and_leaves_no_temporary_file(
    patch: str, gainrl_home: Path, dataset: Path, tiny_model_path: Path, clean: pl.DataFrame
) -> None:
    score(dataset, tiny_model_path)  # published scores exist: a reader must keep seeing them whole
    (dataset.parent / "math.jsonl").write_text(dataset.read_text() + json.dumps(problems(1, offset=500)[0]) + "\n")
    assert run_killed(gainrl_home, score_args(dataset, tiny_model_path), patch) == -signal.SIGKILL
    assert scores(gainrl_home).height in (N, N + 1), "a reader sees all of one version's scores, never a part or none"
    score(dataset, tiny_model_path)
    resumed = scores(gainrl_home)
    assert resumed.height == N + 1 and resumed["id"].n_unique() == N + 1
    assert resumed.filter(pl.col("id").is_in(clean["id"].implode())).equals(clean)
    leftovers = [p for p in gainrl_home.rglob("*") if p.name.startswith(".") or "_staging" in p.name]
    assert leftovers == []


def test_a_truncated_part_is_rescored_and_named(gainrl_home: Path, dataset: Path, tiny_model_path: Path, clean: pl.DataFrame, caplog) -> None:
    score(dataset, tiny_model_path)
    (part,) = [p for p in gainrl_home.rglob(tree.SCORE_PART.name_glob()) if p.name.endswith("00002.parquet")]
    part.write_bytes(part.read_bytes()[:100])
    score(dataset, tiny_model_path)
    assert scores(gainrl_home).equals(clean)
    assert any(str(part.name) in r.getMessage() and "unreadable" in r.getMessage() for r in caplog.records)


def test_a_garbage_shard_is_rebuilt(gainrl_home: Path, dataset: Path, tiny_model_path: Path, clean: pl.DataFrame, caplog) -> None:
    score(dataset, tiny_model_path)
    (shard,) = [p for p in gainrl_home.rglob(tree.SHARD.name_glob()) if p.name.endswith("00003.parquet")]
    shard.write_bytes(b"not a parquet file at all")
    score(dataset, tiny_model_path)
    assert scores(gainrl_home).equals(clean)
    assert pq.read_metadata(shard).num_rows == SHARD
    assert any("rebuilding a shard" in r.getMessage() and shard.name in r.getMessage() for r in caplog.records)


def test_the_catalog_survives_a_garbage_file_and_sql_warns_in_one_line(
    gainrl_home: Path, dataset: Path, tiny_model_path: Path, capsys
) -> None:
    score(dataset, tiny_model_path)
    (shard,) = [p for p in gainrl_home.rglob(tree.SHARD.name_glob()) if p.name.endswith("00001.parquet")]
    shard.write_bytes(b"garbage")
    refresh_catalog(gainrl_home)
    (problem,) = catalog_problems(gainrl_home)
    assert problem["view"] == "tokens" and problem["path"] == str(shard)
    assert query(gainrl_home, "SELECT count(*) AS n FROM curriculum")["n"].to_list() == [N]
    assert query(gainrl_home, "SELECT count(*) AS n FROM tokens")["n"].to_list() == [N - SHARD]
    capsys.readouterr()
    assert cli.main(["sql", "SELECT count(*) FROM scores"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gainrl sql: warning: ") and shard.name in err[0]


def test_a_garbage_catalog_file_is_rebuilt(gainrl_home: Path, dataset: Path, tiny_model_path: Path, capsys) -> None:
    score(dataset, tiny_model_path)
    Layout(gainrl_home).catalog.write_bytes(b"garbage" * 100)
    capsys.readouterr()
    assert cli.main(["sql", "--no-refresh", "SELECT 1"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert cli.main(["sql", "SELECT count(*) FROM scores"]) == 0
    assert scores(gainrl_home).height == N


def test_an_edited_file_is_a_new_version_and_nothing_stale_is_served(gainrl_home: Path, dataset: Path, tiny_model_path: Path) -> None:
    score(dataset, tiny_model_path)
    rows = problems()
    for i in range(10):
        rows[i * 5] = {"problem": f"Edited problem {i}: what is {i} + 40?", "answer": str(i + 40)}
    write_jsonl(dataset, rows)
    score(dataset, tiny_model_path)
    current = query(gainrl_home, "SELECT c.id, c.problem, p.problem AS expected FROM curriculum c JOIN prompts p USING (id)")
    assert current.height == N and current["problem"].null_count() == 0
    assert set(current["id"]) == set(query(gainrl_home, "SELECT id FROM prompts")["id"])
    assert current.filter(pl.col("problem").str.starts_with("Edited")).height == 10
    versions = query(gainrl_home, "SELECT version, prompts, served FROM dataset_versions ORDER BY served")
    assert versions["served"].to_list() == [False, True] and versions["prompts"].to_list() == [N, N]
    old = versions["version"][0]
    assert list(gainrl_home.glob(f"scores/dataset=math/version={old}/*/*/scores.parquet")), "the old version stays addressable"


def test_another_file_under_the_same_name_replaces_what_the_name_means(gainrl_home: Path, tmp_path: Path, tiny_model_path: Path) -> None:
    score(write_jsonl(tmp_path / "a.jsonl", problems(200)), tiny_model_path, name="shared")
    score(write_jsonl(tmp_path / "b.jsonl", problems(200, offset=1000)), tiny_model_path, name="shared")
    counts = query(gainrl_home, """
        SELECT (SELECT count(*) FROM prompts) AS prompts, (SELECT count(*) FROM scores) AS scores,
               (SELECT count(*) FROM curriculum WHERE problem IS NULL) AS orphans""")
    assert counts.row(0) == (200, 200, 0)
    assert query(gainrl_home, "SELECT file FROM dataset_versions WHERE served")["file"].to_list() == [str(tmp_path / "b.jsonl")]


@pytest.mark.parametrize("name", ["../../x", "/tmp/abs", "a/b", ".hidden"])
def test_names_that_escape_the_root_are_refused_in_one_line(name: str, gainrl_home: Path, dataset: Path, capsys) -> None:
    assert cli.main(["score", "--data", str(dataset), "--name", name]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("gainrl score: dataset name") and "must match" in line
    assert not (gainrl_home / "datasets").exists()


@pytest.mark.parametrize("sql", [
    "COPY (SELECT 1) TO 'x.csv'",
    "COPY scores TO '{root}/scores/math/planted.parquet'",
    "ATTACH '/tmp/other.duckdb'",
    "INSTALL httpfs",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SET enable_external_access = true",
])
def test_the_sql_shell_cannot_write_or_read_outside_the_root(sql: str, gainrl_home: Path, dataset: Path, tiny_model_path: Path, capsys) -> None:
    score(dataset, tiny_model_path)
    capsys.readouterr()
    assert cli.main(["sql", sql.format(root=gainrl_home)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("gainrl sql: ")
    assert not list(gainrl_home.rglob("planted*")) and not Path("x.csv").exists()
    assert cli.main(["sql", "SELECT count(*) FROM scores"]) == 0


# Malformed inputs: (file name, bytes, expected fragments of the one-line error in "fail" mode).
DEEP = "[" * 100_000 + "]" * 100_000
MALFORMED: list[tuple[str, bytes, tuple[str, ...]]] = [
    ("empty.jsonl", b"", ("no rows to load",)),
    ("blank.jsonl", b"\n\n  \n", ("no rows to load",)),
    ("bad_json.jsonl", b'{"problem": "1+1?", "answer": "2"}\n{"problem": "2+2?", "answer": \n', ("row 1", "field '<line>'", "invalid JSON")),
    ("no_problem.jsonl", b'{"answer": "2"}\n', ("row 0", "field 'problem'", "missing")),
    ("null_answer.jsonl", b'{"problem": "1+1?", "answer": null}\n', ("row 0", "field 'answer'", "null value")),
    ("empty_problem.jsonl", b'{"problem": "   ", "answer": "2"}\n', ("row 0", "field 'problem'", "empty problem")),
    ("list_answer.jsonl", b'{"problem": "1+1?", "answer": [2]}\n', ("row 0", "field 'answer'", "not text")),
    ("nan_answer.jsonl", b'{"problem": "1+1?", "answer": NaN}\n', ("row 0", "field 'answer'", "not a finite number")),
    ("number_row.jsonl", b'{"problem": "1+1?", "answer": "2"}\n42\n', ("row 1", "field '<row>'", "not an object")),
    ("bad_utf8.jsonl", b'{"problem": "1+1?", "answer": "2"}\n{"problem": "\xff\xfe", "answer": "2"}\n', ("row 1", "field '<line>'", "undecodable")),
    ("deep_line.jsonl", b'{"problem": "1+1?", "answer": "2"}\n' + DEEP.encode() + b"\n", ("row 1", "field '<line>'", "nested too deeply")),
    ("deep_metadata.jsonl", ('{"problem": "1+1?", "answer": "2", "x": ' + "[" * 600 + "]" * 600 + "}\n").encode(), ("row 0", "field 'metadata'", "nested too deeply")),
    ("deep.json", DEEP.encode(), ("nested too deeply",)),
    ("scalar.json", b'"just a string"', ("expected a JSON list of objects",)),
    ("broken.json", b'[{"problem": "1+1?", "answer": "2"}', ("not valid JSON",)),
    ("table.csv", b"problem,answer\n1+1?,2\n", ("unsupported format '.csv'",)),
    ("garbage.parquet", b"PAR1 this is not parquet", ("not a readable Parquet file",)),
    ("surrogate.jsonl", b'{"problem": "\\ud800 x", "answer": "2"}\n', ("row 0", "field 'problem'", "lone surrogate")),
    ("chat_no_user.jsonl", b'{"prompt": [{"role": "system", "content": "hi"}], "answer": "2"}\n', ("row 0", "field 'prompt'", "no user message")),
    ("problem_number.jsonl", b'{"problem": 12, "answer": "2"}\n', ("row 0", "field 'problem'", "not text")),
    ("nested_wrong.jsonl", b'{"question": {"text": "1+1?"}, "answer": "2"}\n', ("row 0", "field 'question'", "not text")),
]


def _parquet_cases(tmp_path: Path) -> list[tuple[Path, tuple[str, ...]]]:
    ints = tmp_path / "int_problem.parquet"
    pq.write_table(pa.table({"problem": [1, 2], "answer": ["1", "2"]}), ints)
    cut = tmp_path / "truncated.parquet"
    pq.write_table(pa.table({"problem": [f"q{i}" for i in range(500)], "answer": ["1"] * 500}), cut)
    cut.write_bytes(cut.read_bytes()[:-40])
    return [(ints, ("row 0", "field 'problem'", "not text")), (cut, ("not a readable Parquet file",)), (tmp_path / "missing.jsonl", ("no such file",))]


def _cases(tmp_path: Path) -> list[tuple[Path, tuple[str, ...]]]:
    cases = []
    for name, content, expected in MALFORMED:
        (path := tmp_path / name).write_bytes(content)
        cases.append((path, expected))
    return cases + _parquet_cases(tmp_path)


def test_there_are_at_least_twenty_malformed_inputs(tmp_path: Path) -> None:
    assert len(_cases(tmp_path)) >= 20


def test_each_malformed_file_is_one_line_naming_file_row_and_field_and_writes_nothing(
    gainrl_home: Path, tmp_path: Path, tiny_model_path: Path, capsys
) -> None:
    for path, expected in _cases(tmp_path):
        assert cli.main(["score", "--data", str(path), "--model", str(tiny_model_path), "--name", "bad"]) == 2, path.name
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"gainrl score: {path}"), lines
        assert all(fragment in lines[0] for fragment in expected), (lines[0], expected)
        assert not (gainrl_home / "datasets" / "bad").exists(), f"{path.name}: something was written"


def test_row_errors_become_rejects_with_reasons_in_skip_mode(tmp_path: Path) -> None:
    # A good row in the same shape as the bad one, so field detection does not reject it too.
    goods = {"field 'prompt'": {"prompt": [{"role": "user", "content": "What is 5 + 5?"}], "answer": "10"},
             "field 'question'": {"question": "What is 5 + 5?", "answer": "10"}}
    row_cases = [(p, e) for p, e in _cases(tmp_path) if p.suffix == ".jsonl" and e[0].startswith("row ")]
    assert len(row_cases) >= 12
    for path, (row, field, reason) in row_cases:
        good = json.dumps(goods.get(field, {"problem": "What is 5 + 5?", "answer": "10"})).encode() + b"\n"
        content = path.read_bytes()
        path.write_bytes(content + (b"" if content.endswith(b"\n") else b"\n") + good)  # a good row after the bad one
        loaded = load_dataset(path, on_error="skip")
        (reject,) = loaded.rejects.to_pylist()
        assert loaded.table.column("answer")[-1].as_py() == "10", path.name
        assert (reject["file"], f"row {reject['row']}", f"field {reject['field']!r}") == (str(path), row, field), path.name
        assert reason in reject["reason"] and reject["raw"], path.name
