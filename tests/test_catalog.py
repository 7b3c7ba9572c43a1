"""Tests for gainrl_ops.catalog and `gainrl sql`: the views over synthetic artifacts written
with the real schemas, typed empty views, ranking and re-ranking, readers across a refresh."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from gainrl_ops import cli
from gainrl_ops.core import tables
from gainrl_ops.core.keys import ScoresKey
from gainrl_ops.core.layout import Layout
from gainrl_ops.core.storage import write_parquet_atomic, write_text_atomic
from gainrl_ops.curriculum.catalog import (
    EXAMPLE_QUERIES,
    catalog_path,
    connect_readonly,
    describe_error,
    query,
    refresh_catalog,
    refresh_if_changed,
)
from gainrl_ops.data.datasets import CANONICAL_SCHEMA, REJECTS_SCHEMA
from gainrl_ops.data.shards import SHARD_SCHEMA
from gainrl_ops.scoring.publish import SCORE_SCHEMA, compact

DATASET = "arith"
VERSION = "aaaabbbbccccdddd"
PROMPT_FP = "1111222233334444"
CK_BASE = "0123456789abcdef"
CK_TUNED = "fedcba9876543210"
IDS = [f"p{i}" for i in range(7)]
SHARD_SIZES = (4, 3)
W = 8.0


def write_prompts(root: Path, dataset: str = DATASET) -> None:
    layout = Layout(root)
    n = len(IDS)
    prompts = pa.table(
        {
            "id": IDS,
            "problem": [f"What is {i} + {i}?" for i in range(n)],
            "answer": [str(2 * i) for i in range(n)],
            "source": ["synthetic"] * n,
            "difficulty": [float(i % 3) for i in range(n)],
            "metadata": [json.dumps({"i": i}) for i in range(n)],
            "row": list(range(n)),
        },
        schema=CANONICAL_SCHEMA,
    )
    write_parquet_atomic(prompts, layout.prompts(dataset, VERSION))
    label = {"dataset": dataset, "version": VERSION, "file": "in.jsonl", "rows": n, "loaded_at": "2026-11-25T00:00:00+00:00"}
    write_text_atomic(json.dumps(label), layout.dataset_label(dataset))
    rejects = pa.table(
        {"file": ["in.jsonl"], "row": [9], "field": ["answer"], "reason": ["missing"], "raw": ["{}"]},
        schema=REJECTS_SCHEMA,
    )
    write_parquet_atomic(rejects, layout.rejects(dataset, VERSION))
    start = 0
    for index, size in enumerate(SHARD_SIZES):
        ids = IDS[start : start + size]
        start += size
        shard = pa.table(
            {
                "id": ids,
                "input_ids": [[1, 2, 3, 4, 5, 6]] * size,
                "system_start": [0] * size,
                "system_end": [2] * size,
                "question_start": [3] * size,
                "question_end": [5] * size,
                "n_tokens": [6] * size,
                "truncated": [False] * size,
            },
            schema=SHARD_SCHEMA,
        )
        write_parquet_atomic(shard, layout.shards(dataset, VERSION, PROMPT_FP) / f"shard-{index:05d}.parquet")


def score_table(ids: list[str], checkpoint: str, seed: int, nan_first: bool = False) -> pa.Table:
    rng = np.random.default_rng(seed)
    c_intra = rng.uniform(0.0, 1.0, len(ids))
    c_inter = rng.uniform(0.0, 0.2, len(ids))
    if nan_first:  # a one-token question: c_intra (and so the score) is NaN
        c_intra[0] = np.nan
    n = len(ids)
    return pa.table(
        {
            "id": ids,
            "c_intra": c_intra,
            "c_inter": c_inter,
            "angle_score": c_intra + W * c_inter,
            "inter_weight": [W] * n,
            "n_tokens": [6] * n,
            "question_tokens": [2] * n,
            "system_tokens": [2] * n,
            "truncated": [False] * n,
            "dataset": [DATASET] * n,
            "dataset_version": [VERSION] * n,
            "checkpoint": [checkpoint] * n,
            "model": ["tiny"] * n,
            "tokenizer": ["tok"] * n,
            "prompt_fingerprint": [PROMPT_FP] * n,
            "dtype": ["float32"] * n,
            "code_version": ["test"] * n,
        },
        schema=SCORE_SCHEMA,
    )


def write_scores(root: Path, checkpoint: str, seed: int, nan_first: bool = False) -> None:
    out = Layout(root).scores(ScoresKey(DATASET, VERSION, PROMPT_FP, checkpoint))
    table = score_table(IDS, checkpoint, seed, nan_first)
    write_parquet_atomic(table.slice(0, SHARD_SIZES[0]), out / "parts" / "part-00000.parquet")
    write_parquet_atomic(table.slice(SHARD_SIZES[0]), out / "parts" / "part-00001.parquet")
    compact(out)


def register(root: Path, name: str, fingerprint: str, when: str, parent: str | None) -> None:
    record = {
        "fingerprint": fingerprint,
        "name": name,
        "path": f"/models/{name}",
        "registered_at": when,
        "source": "test",
        "parameters": 143_000,
        "parent": parent,
    }
    write_text_atomic(json.dumps(record, indent=2), Layout(root).checkpoints_dir / name / "gainrl_checkpoint.json")


def write_decoys(root: Path) -> None:
    """Staging folders and foreign folders that no view may read."""
    scores = Layout(root).ranked_scores(ScoresKey(DATASET, VERSION, PROMPT_FP, CK_BASE)).parent.parent
    for folder in (".staging-0123456789abcdef", "_tmp", "not-a-fingerprint", "checkpoint=0123456789ABCDEF"):
        write_parquet_atomic(score_table(["decoy"], CK_BASE, 0), scores / folder / "scores.parquet")
    write_parquet_atomic(score_table(["decoy"], CK_BASE, 0), root / "scores" / "_staging" / VERSION / PROMPT_FP / CK_BASE / "scores.parquet")
    # Layout refuses such names, so a decoy dataset folder is written by hand.
    hidden = root / "datasets" / ".hidden"
    shutil.copytree(root / "datasets" / DATASET, hidden)
    (hidden / "current.json").write_text(json.dumps({"dataset": ".hidden", "version": VERSION}))
    register(root, "_partial", "ffffffffffffffff", "2030-01-01T00:00:00+00:00", None)


@pytest.fixture
def root(gainrl_home: Path) -> Path:
    """A storage root with one dataset scored by two checkpoints, plus decoys."""
    write_prompts(gainrl_home)
    write_scores(gainrl_home, CK_BASE, seed=1)
    write_scores(gainrl_home, CK_TUNED, seed=2, nan_first=True)
    register(gainrl_home, "base", CK_BASE, "2025-01-01T00:00:00+00:00", None)
    register(gainrl_home, "tuned", CK_TUNED, "2025-02-01T12:30:00+00:00", CK_BASE)
    write_decoys(gainrl_home)
    refresh_catalog(gainrl_home)
    return gainrl_home


def views(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[str, str]]]:
    """Column names and types of every view."""
    rows = con.sql(
        "SELECT table_name, column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = 'gainrl' ORDER BY table_name, column_index"
    ).fetchall()
    out: dict[str, list[tuple[str, str]]] = {}
    for table, column, kind in rows:
        out.setdefault(table, []).append((column, kind))
    return out


def test_views_return_stored_rows(root: Path) -> None:
    prompts = query(root, "SELECT * FROM prompts ORDER BY id")
    assert prompts.columns == ["dataset", "dataset_version", *CANONICAL_SCHEMA.names]
    assert prompts["id"].to_list() == IDS and set(prompts["dataset"]) == {DATASET}
    assert json.loads(prompts["metadata"][3]) == {"i": 3}

    rejects = query(root, "SELECT * FROM rejects")
    assert rejects.columns == ["dataset", "dataset_version", *REJECTS_SCHEMA.names]
    assert rejects.rows() == [(DATASET, VERSION, "in.jsonl", 9, "answer", "missing", "{}")]

    tokens = query(root, "SELECT * FROM tokens ORDER BY id")
    assert set(SHARD_SCHEMA.names) <= set(tokens.columns)
    assert tokens["id"].to_list() == IDS
    assert set(tokens["dataset"]) == {DATASET} and set(tokens["prompt_fingerprint"]) == {PROMPT_FP}
    assert tokens["input_ids"][0].to_list() == [1, 2, 3, 4, 5, 6]

    scores = query(root, "SELECT * FROM scores ORDER BY checkpoint, id")
    assert scores.columns == [*SCORE_SCHEMA.names, "rank", "n_prompts", "percentile"]
    assert scores.group_by("checkpoint").len().sort("checkpoint").rows() == [(CK_BASE, len(IDS)), (CK_TUNED, len(IDS))]
    assert "decoy" not in scores["id"].to_list()
    expected = score_table(IDS, CK_BASE, seed=1)
    assert np.allclose(scores.filter(pl.col("checkpoint") == CK_BASE)["angle_score"].to_numpy(), expected["angle_score"].to_numpy())
    # The stored NaN reads as NULL, so that aggregates and ordering skip it.
    tuned = scores.filter(pl.col("checkpoint") == CK_TUNED)
    assert tuned["c_intra"].null_count() == 1 and tuned["angle_score"].null_count() == 1
    # Also through a filter, which DuckDB may push into the Parquet scan and its statistics.
    assert query(root, "SELECT id FROM scores WHERE angle_score IS NULL")["id"].to_list() == ["p0"]

    checkpoints = query(root, "SELECT * FROM checkpoints ORDER BY registered_at")
    assert checkpoints.columns == ["fingerprint", "name", "path", "registered_at", "source", "parameters", "parent"]
    assert checkpoints["name"].to_list() == ["base", "tuned"]
    assert checkpoints["parent"].to_list() == [None, CK_BASE]
    assert checkpoints.schema["registered_at"].is_temporal() and checkpoints["parameters"][0] == 143_000


@pytest.fixture
def root_types(tmp_path: Path) -> dict[str, list[tuple[str, str]]]:
    """The view columns and types on a populated root (built aside from the test's own root)."""
    other = tmp_path / "populated"
    write_prompts(other)
    write_scores(other, CK_BASE, seed=1)
    register(other, "base", CK_BASE, "2025-01-01T00:00:00+00:00", None)
    refresh_catalog(other)
    with connect_readonly(other) as con:
        types = views(con)
    assert set(types) == {"checkpoints", "prompts", "rejects", "tokens", "scores", "curriculum", "epochs", "selections", "rollouts", "evaluations", "diagnostics", "dataset_labels", "dataset_versions", "catalog_problems", "rankings", "imported_rankings", "pass_rates"}
    return types


def test_empty_root_has_typed_empty_views(gainrl_home: Path, root_types: dict) -> None:
    refresh_catalog(gainrl_home)
    with connect_readonly(gainrl_home) as con:
        assert views(con) == root_types
        for view in root_types:
            assert con.sql(f"SELECT count(*) FROM {view}").fetchall() == [(0,)]
        assert con.sql("SELECT count(*) FROM rerank(1.0)").fetchall() == [(0,)]


def test_curriculum_ranks_by_angle_score(root: Path) -> None:
    curriculum = query(root, "SELECT * FROM curriculum ORDER BY checkpoint, rank")
    n = len(IDS)
    for checkpoint in (CK_BASE, CK_TUNED):
        group = curriculum.filter(pl.col("checkpoint") == checkpoint)
        assert group["rank"].to_list() == list(range(1, n + 1))
        assert sorted(group["id"]) == IDS
        assert set(group["n_prompts"]) == {n}
        assert np.allclose(group["percentile"].to_numpy(), np.arange(1, n + 1) / n)
        scored = group["angle_score"].drop_nulls()
        assert scored.to_list() == sorted(scored, reverse=True)
    # The unscorable prompt (NaN c_intra) ranks last instead of first.
    tuned = curriculum.filter(pl.col("checkpoint") == CK_TUNED)
    assert tuned["id"][-1] == "p0" and tuned["angle_score"][-1] is None
    row = curriculum.filter((pl.col("checkpoint") == CK_BASE) & (pl.col("id") == "p4")).row(0, named=True)
    assert row["problem"] == "What is 4 + 4?" and row["difficulty"] == 1.0 and row["inter_weight"] == W


def test_rerank(root: Path) -> None:
    order = "ORDER BY checkpoint, rank"
    curriculum = query(root, f"SELECT * FROM curriculum {order}")
    assert_frame_equal(query(root, f"SELECT * FROM rerank({W}) {order}"), curriculum)
    assert_frame_equal(query(root, f"SELECT * FROM rerank(8) {order}"), curriculum)  # an integer weight works too

    intra = query(root, f"SELECT * FROM rerank(0.0) {order}")
    assert set(intra["inter_weight"]) == {0.0}
    for checkpoint in (CK_BASE, CK_TUNED):
        group = intra.filter(pl.col("checkpoint") == checkpoint)
        expected = group.sort(pl.col("c_intra"), "id", descending=[True, False], nulls_last=True)
        assert group["id"].to_list() == expected["id"].to_list()
        assert np.allclose(group["angle_score"].drop_nulls().to_numpy(), group["c_intra"].drop_nulls().to_numpy())
    assert intra["id"].to_list() != curriculum["id"].to_list()  # w matters on this data


def test_rerank_top_k_is_the_head_of_the_whole_ranking(root: Path) -> None:
    """`WHERE rank <= k` (which DuckDB answers with a top k per checkpoint, without ranking
    every row) returns the first k rows of the whole ranking, the unscored prompt included."""
    order = "ORDER BY checkpoint, rank"
    for w in (0.0, 2.0, W):
        whole = query(root, f"SELECT * FROM rerank({w}) {order}")
        for k in (1, 3, len(IDS)):
            assert_frame_equal(query(root, f"SELECT * FROM rerank({w}) WHERE rank <= {k} {order}"), whole.filter(pl.col("rank") <= k))
        one = query(root, f"SELECT * FROM rerank({w}, ck := '{CK_TUNED}') WHERE rank <= 3 ORDER BY rank")
        assert_frame_equal(one, whole.filter((pl.col("checkpoint") == CK_TUNED) & (pl.col("rank") <= 3)))
    # A weight that makes every score non-finite: all read as NULL, ranked by id.
    unscored = query(root, f"SELECT * FROM rerank('nan'::DOUBLE, ck := '{CK_BASE}') ORDER BY rank")
    assert unscored["id"].to_list() == sorted(IDS) and unscored["angle_score"].null_count() == len(IDS)


def test_reader_survives_refresh_and_new_reader_sees_new_scores(gainrl_home: Path) -> None:
    write_prompts(gainrl_home)
    refresh_catalog(gainrl_home)  # no scores yet: a typed empty view
    old = connect_readonly(gainrl_home)
    try:
        assert old.sql("SELECT count(*) FROM curriculum").fetchall() == [(0,)]
        write_scores(gainrl_home, CK_BASE, seed=1)
        refresh_catalog(gainrl_home)
        # The old reader still reads its own (renamed-over) catalog.
        assert old.sql("SELECT count(*) FROM curriculum").fetchall() == [(0,)]
        assert old.sql("SELECT count(*) FROM prompts").fetchall() == [(len(IDS),)]
        with connect_readonly(gainrl_home) as new:
            assert new.sql("SELECT count(*) FROM curriculum").fetchall() == [(len(IDS),)]
        # Once a kind of artifact exists, new files of that kind need no refresh.
        write_scores(gainrl_home, CK_TUNED, seed=2)
        with connect_readonly(gainrl_home) as new:
            assert new.sql("SELECT count(DISTINCT checkpoint) FROM curriculum").fetchall() == [(2,)]
    finally:
        old.close()


def test_connect_readonly_builds_a_missing_catalog(gainrl_home: Path) -> None:
    write_prompts(gainrl_home)
    assert not catalog_path(gainrl_home).exists()
    assert query(gainrl_home, "SELECT count(*) AS n FROM prompts")["n"].to_list() == [len(IDS)]
    assert catalog_path(gainrl_home).exists()


def test_refresh_if_changed_rebuilds_only_when_what_it_reads_changed(root: Path) -> None:
    catalog = catalog_path(root)
    built = catalog.stat().st_mtime_ns
    assert refresh_if_changed(root) == [] and catalog.stat().st_mtime_ns == built, "nothing changed: no rebuild"

    write_scores(root, "aaaaaaaaaaaaaaaa", seed=3)  # a new file of a kind the catalog has
    refresh_if_changed(root)
    rebuilt = catalog.stat().st_mtime_ns
    assert rebuilt != built
    assert query(root, "SELECT count(DISTINCT checkpoint) AS n FROM scores")["n"].to_list() == [3]

    bad = Layout(root).scores(ScoresKey(DATASET, VERSION, PROMPT_FP, "a" * 16)) / "scores.parquet"
    bad.write_bytes(b"not parquet")  # the same path, damaged: its size and time changed
    (problem,) = refresh_if_changed(root)
    assert problem[1] == str(bad) and catalog.stat().st_mtime_ns != rebuilt
    assert refresh_if_changed(root) == [problem], "the recorded problems come back without a rebuild"

    catalog.write_bytes(b"garbage")  # a damaged catalog is rebuilt even though its inputs are the same
    refresh_if_changed(root)
    assert query(root, "SELECT count(*) AS n FROM prompts")["n"].to_list() == [len(IDS)]


def test_catalog_opens_with_plain_duckdb(root: Path) -> None:
    """As a user would from a notebook or the duckdb CLI: a normal (read-write) connection."""
    with duckdb.connect(str(catalog_path(root))) as con:
        assert con.sql("SELECT count(*) FROM curriculum WHERE rank = 1").fetchall() == [(2,)]
        assert con.sql("SELECT count(*) FROM rerank(0.0)").fetchall() == [(2 * len(IDS),)]
        tables = con.sql("SELECT count(*) FROM duckdb_tables() WHERE NOT internal").fetchall()
        assert tables == [(0,)]  # views and macros only: the catalog holds no data


def test_query_limit(root: Path) -> None:
    assert query(root, "SELECT * FROM scores", limit=3).height == 3
    assert query(root, "SELECT * FROM scores WHERE false", limit=3).columns == [*SCORE_SCHEMA.names, "rank", "n_prompts", "percentile"]


def test_example_queries_run(root: Path) -> None:
    top, by_difficulty, moves = (query(root, sql) for sql in EXAMPLE_QUERIES)
    assert set(top["checkpoint"]) == {CK_TUNED} and top["rank"].to_list() == list(range(1, len(IDS) + 1))
    assert set(by_difficulty["difficulty"]) == {0.0, 1.0, 2.0}
    assert moves.height > 0 and "shift" in moves.columns


def test_cli_sql_prints_a_table(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sql", f"SELECT id, rank, problem FROM curriculum WHERE checkpoint = '{CK_BASE}' ORDER BY rank"]) == 0
    out = capsys.readouterr().out
    assert "rank" in out and "What is" in out and f"{len(IDS)} rows" in out
    assert cli.main(["sql", "--max-rows", "3", "SELECT * FROM scores"]) == 0
    out = capsys.readouterr().out
    assert "more rows not shown" in out and out.splitlines()[-1].startswith("3 rows")


def test_format_table_aligns_numbers_and_cuts_long_text() -> None:
    table = tables.format_table(
        ["id", "score", "note"], ["VARCHAR", "DOUBLE", "VARCHAR"],
        [("a", 1.5, None), ("bb", 12.25, "line one\nline two"), ("c", None, "x" * 200)],
    ).splitlines()
    assert table[0].split() == ["id", "score", "note"] and table[1].split() == ["VARCHAR", "DOUBLE", "VARCHAR"]
    rows = table[3:]
    assert [row.index("1.5") + 3 for row in rows[:1]] == [rows[1].index("12.25") + 5], "numbers end in one column"
    assert rows[0].endswith("null") and "line one\\nline two" in rows[1], "null shown, one line per row"
    assert rows[2].endswith("x" * (tables.MAX_CELL_CHARS - 1) + "…")


def test_cli_sql_error_is_one_line(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sql", "SELEC * FROM curriculum"]) == 2
    assert cli.main(["sql", "--no-refresh", "SELECT * FROM no_such_view"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("gainrl sql: ") for line in err)
    assert "Parser Error" in err[0] and "no_such_view" in err[1]


def test_describe_error_drops_the_echoed_query() -> None:
    with pytest.raises(duckdb.Error) as caught, duckdb.connect() as con:
        con.sql("SELECT nope FROM range(3)")
    message = describe_error(caught.value)
    assert "\n" not in message and "nope" in message and "LINE 1" not in message
