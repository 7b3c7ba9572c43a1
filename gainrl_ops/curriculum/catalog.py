"""The SQL catalog: one DuckDB file of views and macros over the stored artifacts, no data.

`refresh_catalog(root)` writes `root/gainrl.duckdb`. It holds no rows: every view reads the
Parquet and JSON files under the root when it is queried, so new files of a kind that
already existed at the last refresh show up without a refresh, the file is tiny and cheap
to rebuild, and deleting it loses nothing. Query it with `gainrl sql "..."`, with
`query(root, sql)` from Python, or with the duckdb CLI (`duckdb -readonly <root>/gainrl.duckdb`).

============  ==========================================================
view / macro  one row per
============  ==========================================================
checkpoints   registered checkpoint
prompts       canonical prompt of a dataset
rejects       input row dropped while loading a dataset
tokens        tokenized prompt, per prompt fingerprint
scores        prompt scored by a checkpoint
curriculum    prompt ranked within (dataset, prompt_fingerprint,
              checkpoint) by the stored angle_score (scores joined with prompts)
rerank(w)     as curriculum, ranked by c_intra + w * c_inter
pass_rates    sampled prompt's pass rate and learnability under a checkpoint
rankings      prompt in each ranking: angle, pass_rate, learnability, external
epochs        epoch of a training run
selections    prompt selected for an epoch of a training run
rollouts      prompt trained on in an epoch of a training run: its group's rewards
evaluations   held-out problem answered by a checkpoint
diagnostics   sampled prompt's gradient norm under a checkpoint
============  ==========================================================

Each view reads the files of one `core.layout` template, named in the view's comment.

Columns: each is declared once, with its type and meaning, in `core.columns`, which also
generates the Arrow schemas the writers use; in SQL, `SELECT table_name, column_name, comment
FROM duckdb_columns()` and `SELECT view_name, comment FROM duckdb_views()` list them. A NaN
component (e.g. c_intra of a one-token question) reads as NULL, and rank 1 is the highest
angle_score, ties by id (`core.columns.finite_sql`, `rank_sql`: the scorer stores ranks by the
same rule).

Only published folders count: names starting with "." or "_" are staging, and a scores folder
must be named like a checkpoint fingerprint. Dataset names and prompt fingerprints that only
the path carries are taken from the file name.

`refresh_if_changed(root)` skips the rebuild when nothing a refresh reads has changed since the
last one (the files the views match, by path, size, modification time and inode; the catalog file
itself; this code), which it records in `gainrl.duckdb.state.json` beside the catalog.

Concurrency: a refresh builds the new file next to the old one and renames it over it, so
it never waits for a lock and never breaks a reader; a reader that opened the old file keeps
it, a new one sees the new file. Open the file read-only (as `connect_readonly` does): a
read-write connection locks out read-only readers in other processes until it closes or the
next refresh replaces the file.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from gainrl_ops.core import columns as registry
from gainrl_ops.core import layout as tree
from gainrl_ops.core.columns import Column, finite_sql, ident, percentile_sql, rank_sql
from gainrl_ops.core.layout import Layout, Template
from gainrl_ops.core.storage import atomic_path, sweep_temporary, write_text_atomic

if TYPE_CHECKING:  # `gainrl sql` prints without them: polars and pyarrow cost it half a second
    import polars as pl

# Where a memory-limited connection spills; DuckDB removes its files when the query ends.
SPILL_DIR = ".duckdb-spill"
# The catalog's name inside a connection, the same one the duckdb CLI gives the file.
CATALOG_NAME = "gainrl"

_PARQUET = "read_parquet({files}, filename = true, union_by_name = true)"
# Explicit columns: the JSON reader would otherwise guess a type per file (e.g. an all-null parent).
_POINTER_COLUMNS = {"dataset": "VARCHAR", "version": "VARCHAR"}
_PROVENANCE_COLUMNS = {**_POINTER_COLUMNS, "file": "VARCHAR", "rows": "BIGINT", "loaded_at": "VARCHAR", "rows_read": "BIGINT"}
# What each dataset name serves (datasets/<dataset>/current.json) and loaded last; the views filter on the first.
LABELS = "dataset_labels"



def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _from_path(template: Template, field: str) -> str:
    """SQL for `field` of `template`, read from the row's file name."""
    return f"regexp_extract(filename, {_literal(template.regex(field))}, 1)"


@dataclass(frozen=True)
class Source:
    """A view over one kind of stored artifact, found by a glob under the storage root."""

    view: str
    doc: str
    template: Template
    reader: str  # table function call with a `{files}` placeholder
    columns: tuple[Column, ...]
    current_only: bool = False  # rows of the content version each dataset name serves only

    def body_sql(self, files: str | list[str] | None, every_version: bool = False) -> str:
        """The query over `files` (a glob or a list), or a typed empty one when there are none:
        DuckDB fails on a glob that matches nothing."""
        if not files:
            return f"SELECT {', '.join(c.null() for c in self.columns)} WHERE false"
        listed = _literal(files) if isinstance(files, str) else "[" + ", ".join(_literal(f) for f in files) + "]"
        body = f"SELECT {', '.join(c.select() for c in self.columns)} FROM {self.reader.format(files=listed)}"
        if self.current_only and not every_version:
            body = f"SELECT * FROM ({body}) WHERE (dataset, dataset_version) IN (SELECT dataset, version FROM {LABELS})"
        return body

    def create_sql(self, files: str | list[str] | None) -> str:
        return f"CREATE VIEW {self.view} AS {self.body_sql(files)}"


def _json_reader(columns: tuple[Column, ...]) -> str:
    """read_json with explicit column types: it would otherwise guess a type per file (e.g. an
    all-null parent). A column read by an expression is read as text and cast by it."""
    types = ", ".join(f"{column.name}: '{'VARCHAR' if column.expr else column.type}'" for column in columns)
    return f"read_json({{files}}, format = 'auto', filename = true, columns = {{{{{types}}}}})"


def _keys(template: Template, *fields: str) -> tuple[Column, ...]:
    """The dataset (and further key) columns of a view, read from each row's file name."""
    named = {"dataset": registry.DATASET, "version": registry.DATASET_VERSION, "prompt_fingerprint": registry.PROMPT_FINGERPRINT}
    return tuple(named[field].read_as(_from_path(template, field)) for field in ("dataset", "version", *fields))


_CHECKPOINT_RECORD = tuple(
    column.read_as("try_cast(registered_at AS TIMESTAMPTZ)") if column.name == "registered_at" else column
    for column in registry.CHECKPOINT_RECORD
)
_ID, _N_TOKENS, _TRUNCATED = registry.ID, registry.N_TOKENS, registry.TRUNCATED
_SHARD = {column.name: column for column in registry.SHARD}

SOURCES: tuple[Source, ...] = (
    Source("checkpoints", "One row per registered checkpoint.", tree.CHECKPOINT_RECORD, _json_reader(_CHECKPOINT_RECORD), _CHECKPOINT_RECORD),
    Source(
        "prompts", "One row per canonical prompt of each dataset.", tree.PROMPTS, _PARQUET,
        (*_keys(tree.PROMPTS), *registry.PROMPT), current_only=True,
    ),
    Source(
        "rejects", "One row per input row dropped while loading a dataset.", tree.REJECTS, _PARQUET,
        (*_keys(tree.REJECTS), *registry.REJECT), current_only=True,
    ),
    Source(
        "tokens",
        "One row per tokenized prompt and prompt fingerprint.",
        tree.SHARD,
        # Every shard has the same schema: binding reads one footer, not thousands.
        "read_parquet({files}, filename = true)",
        (
            *_keys(tree.SHARD, "prompt_fingerprint"),
            *(_SHARD[name] for name in ("id", "n_tokens", "truncated", "system_start", "system_end", "question_start", "question_end", "input_ids")),
        ),
        current_only=True,
    ),
    Source(
        "scores",
        "One row per prompt scored by a checkpoint, with its stored rank (each checkpoint's scores are one ranked file).",
        tree.SCORES,
        "read_parquet({files}, filename = true, hive_partitioning = true)",
        registry.RANKED_SCORE,
        current_only=True,
    ),
    Source(
        "pass_rates",
        "One row per sampled prompt and checkpoint: the fraction of k sampled completions the training reward "
        "counts correct, its learnability p(1 - p), what generating them cost, and both ranks (stored at publish time).",
        tree.PASS_RATES,
        "read_parquet({files}, filename = true, hive_partitioning = true)",
        registry.RANKED_PASS_RATES,
        current_only=True,
    ),
    Source(
        "imported_rankings",
        "One row per prompt of a ranking imported from elsewhere (gainrl import-ranking).",
        tree.IMPORTED_RANKING,
        _PARQUET,
        (
            *_keys(tree.IMPORTED_RANKING),
            registry.RANKING_LABEL.read_as(_from_path(tree.IMPORTED_RANKING, "name")),
            *registry.IMPORTED_RANKING,
        ),
        current_only=True,
    ),
    Source("epochs", "One row per epoch of a training run.", tree.EPOCHS, _PARQUET, registry.EPOCHS),
    Source("selections", "One row per prompt selected for an epoch of a training run.", tree.SELECTIONS, _PARQUET, registry.SELECTIONS),
    Source(
        "rollouts",
        "One row per prompt trained on in an epoch of a training run: n, mean and std of its group's rewards.",
        tree.ROLLOUTS,
        _PARQUET,
        registry.ROLLOUTS,
    ),
    Source(
        "evaluations",
        "One row per held-out problem and checkpoint.",
        tree.EVALUATION,
        _PARQUET,
        (
            registry.EVALUATION_DATASET.read_as(_from_path(tree.EVALUATION, "dataset")),
            registry.DATASET_VERSION.read_as(_from_path(tree.EVALUATION, "version")),
            *registry.EVALUATION,
        ),
        current_only=True,
    ),
    Source(
        "diagnostics",
        "One row per sampled prompt of a signal diagnostic: its gradient norm under the checkpoint "
        "and its stored scores.",
        tree.DIAGNOSTICS,
        _PARQUET,
        (
            *_keys(tree.DIAGNOSTICS),
            registry.PROMPT_FINGERPRINT,
            registry.MEASURED_CHECKPOINT.read_as(_from_path(tree.DIAGNOSTICS, "checkpoint")),
            *registry.DIAGNOSTIC,
        ),
        current_only=True,
    ),
)

CURRICULUM_DOC = (
    "One row per scored prompt, ranked within (dataset, prompt_fingerprint, checkpoint) by the "
    "stored angle_score, highest first; rerank(w) gives the same columns for another inter weight."
)
CURRICULUM_COLUMNS: tuple[Column, ...] = registry.CURRICULUM
RERANK_DOC = (
    "rerank(w, ck := NULL): the curriculum with angle_score = c_intra + w * c_inter and the rank re-derived, "
    "over one checkpoint when ck names it, e.g. SELECT * FROM rerank(0.0, ck := '...') WHERE rank <= 100 ORDER BY rank "
    "(a filter on rank is answered with a top k per checkpoint, without ranking every row)"
)

_GROUP = "PARTITION BY dataset, dataset_version, prompt_fingerprint, checkpoint"
_PROMPT_JOIN = "LEFT JOIN prompts AS p ON p.dataset = r.dataset AND p.dataset_version = r.dataset_version AND p.id = r.id"
_FROM_PROMPTS = ("difficulty", "problem")


def _ranked_columns(percentile: str) -> str:
    """The curriculum's columns over the ranked scores `r` joined with their prompts `p`."""
    return ", ".join(
        percentile if column is registry.PERCENTILE else f"{'p' if column.name in _FROM_PROMPTS else 'r'}.{ident(column.name)}"
        for column in CURRICULUM_COLUMNS
    )


# The rank is stored with the scores at publish time, so the view only joins the problem text.
CURRICULUM_SQL = f"CREATE VIEW curriculum AS SELECT {_ranked_columns('r.percentile')} FROM scores AS r {_PROMPT_JOIN}"
# Another weight needs another order: the window runs, over one checkpoint when `ck` names it,
# with the rule the stored rank was given by (`rank_sql`); a non-finite score reads as NULL, as
# in `scores`. Each group is one ranked file, whose prompt count is stored.
RERANK_SQL = f"""
CREATE MACRO rerank(w, ck := NULL) AS TABLE
WITH scored AS (
    SELECT dataset, dataset_version, prompt_fingerprint, checkpoint, id, {finite_sql("c_intra + CAST(w AS DOUBLE) * c_inter")} AS angle_score,
           c_intra, c_inter, CAST(w AS DOUBLE) AS inter_weight, n_tokens, question_tokens, system_tokens, truncated, n_prompts
    FROM scores WHERE ck IS NULL OR checkpoint = ck
), r AS (
    SELECT *, {rank_sql(_GROUP)} AS "rank"
    FROM scored
)
SELECT {_ranked_columns(percentile_sql('r."rank"', "r.n_prompts") + " AS percentile")} FROM r {_PROMPT_JOIN}
"""

EXAMPLE_QUERIES: tuple[str, ...] = (
    # Top 10 of the curriculum of the most recently registered checkpoint (any scored one if none is registered).
    """WITH latest AS (
    SELECT s.checkpoint FROM (SELECT DISTINCT checkpoint FROM curriculum) AS s
    LEFT JOIN checkpoints AS c ON c.fingerprint = s.checkpoint
    ORDER BY c.registered_at DESC NULLS LAST, s.checkpoint LIMIT 1
)
SELECT dataset, checkpoint, rank, round(percentile, 3) AS percentile, round(angle_score, 4) AS angle_score,
       difficulty, left(problem, 80) AS problem
FROM curriculum WHERE checkpoint = (SELECT checkpoint FROM latest)
ORDER BY dataset, rank LIMIT 10""",
    # How the score and its components vary with the dataset's difficulty, per checkpoint.
    """SELECT dataset, checkpoint, difficulty, count(*) AS prompts,
       round(avg(angle_score), 4) AS mean_score, round(stddev(angle_score), 4) AS sd_score,
       round(avg(c_intra), 4) AS mean_c_intra, round(avg(c_inter), 4) AS mean_c_inter,
       round(avg(percentile), 3) AS mean_percentile
FROM curriculum GROUP BY ALL ORDER BY ALL""",
    # Prompts whose rank moves most between inter weight 8 (published) and 0 (intra only).
    """SELECT a.dataset, a.checkpoint, a.id, a.rank AS rank_w8, b.rank AS rank_w0, b.rank - a.rank AS shift,
       left(a.problem, 60) AS problem
FROM rerank(8.0) AS a JOIN rerank(0.0) AS b USING (dataset, prompt_fingerprint, checkpoint, id)
ORDER BY abs(b.rank - a.rank) DESC, a.id LIMIT 10""",
)


def catalog_path(root: Path) -> Path:
    return Layout(Path(root)).catalog


def _comment_sql(view: str, doc: str, columns: tuple[Column, ...]) -> Iterator[str]:
    yield f"COMMENT ON VIEW {view} IS {_literal(doc)}"
    for column in columns:
        yield f"COMMENT ON COLUMN {view}.{ident(column.name)} IS {_literal(column.doc)}"


def _json_sql(con: duckdb.DuckDBPyConnection, layout: Layout, template: Template, columns: dict[str, str]) -> str:
    """A query over every published JSON file of `template` with these typed columns (typed and
    empty when there is none: DuckDB fails on a glob that matches nothing)."""
    if not _matching(con, layout.glob(template)):
        return "SELECT " + ", ".join(f"CAST(NULL AS {t}) AS {ident(c)}" for c, t in columns.items()) + " WHERE false"
    typed = ", ".join(f"{ident(c)}: {_literal(t)}" for c, t in columns.items())
    return f"SELECT * FROM read_json({_literal(layout.glob(template))}, format = 'auto', columns = {{{typed}}})"


def _labels_sql(layout: Layout, con: duckdb.DuckDBPyConnection) -> str:
    served = _json_sql(con, layout, tree.DATASET_LABEL, _POINTER_COLUMNS)
    loaded = _json_sql(con, layout, tree.LOADED_LABEL, _POINTER_COLUMNS)
    return (
        f"CREATE VIEW {LABELS} AS SELECT coalesce(s.dataset, l.dataset) AS dataset, s.version, l.version AS loaded_version "
        f"FROM ({served}) AS s FULL OUTER JOIN ({loaded}) AS l ON l.dataset = s.dataset"
    )


DATASET_VERSIONS_SQL = f"""
CREATE VIEW dataset_versions AS
SELECT p.dataset, p.dataset_version AS version, count(*) AS prompts,
       coalesce(l.version = p.dataset_version, false) AS served, coalesce(l.loaded_version = p.dataset_version, false) AS loaded,
       v.file, v.loaded_at, v.rows_read
FROM ({{all_prompts}}) AS p
LEFT JOIN {LABELS} AS l ON l.dataset = p.dataset
LEFT JOIN ({{provenance}}) AS v ON v.dataset = p.dataset AND v.version = p.dataset_version
GROUP BY ALL
"""
DATASET_VERSIONS_DOC = (
    "One row per content version of each dataset name: its prompt count, whether the name serves it (served: what "
    "the other views, training and exports read), whether it is the version loaded last (loaded), and the file it was "
    "loaded from, when, and how many input rows were read. A loaded version is served once a checkpoint's scores of "
    "it are published, or at once when the served version has no scores."
)
RANKINGS_SQL = """
CREATE VIEW rankings AS
SELECT dataset, dataset_version, 'angle' AS source, checkpoint AS ranking, id, rank FROM scores
UNION ALL
SELECT dataset, dataset_version, 'pass_rate' AS source, checkpoint AS ranking, id, pass_rate_rank AS rank FROM pass_rates
UNION ALL
SELECT dataset, dataset_version, 'learnability' AS source, checkpoint AS ranking, id, learnability_rank AS rank FROM pass_rates
UNION ALL
SELECT dataset, dataset_version, 'external' AS source, ranking, id, rank FROM imported_rankings
"""
RANKINGS_DOC = (
    "Every ranking of each dataset's served version: ours per checkpoint, named by its fingerprint (source 'angle': "
    "1 = highest angle score; 'pass_rate': 1 = highest pass rate, the easiest, over the prompts sampled; "
    "'learnability': 1 = highest p(1 - p)) and imported ones (source 'external', named by their label); rank 1 comes first."
)
LABELS_DOC = "One row per dataset name: the content version it serves (version; the other views show it) and the one loaded last."
PROBLEMS_DOC = "Artifacts left out of the catalog at its last refresh because they could not be read: view, path, error."


def _matching(con: duckdb.DuckDBPyConnection, pattern: str) -> list[str]:
    return [row[0] for row in con.execute("SELECT file FROM glob(?) ORDER BY file", [pattern]).fetchall()]


def _readable(probe: duckdb.DuckDBPyConnection, source: Source, files: str | list[str]) -> str | None:
    """None if the query over `files` binds and counts (every footer or document parses), else why not.
    `probe` is a connection of its own: a failed statement would abort the catalog's transaction."""
    try:
        probe.execute(f"SELECT count(*) FROM ({source.body_sql(files, every_version=True)})").fetchall()
    except duckdb.Error as error:
        return describe_error(error)
    return None


def _readable_files(con: duckdb.DuckDBPyConnection, probe: duckdb.DuckDBPyConnection, layout: Layout, source: Source,
                    problems: list[tuple[str, str, str]]) -> str | list[str] | None:
    """What a view reads: its glob when every file reads, else the list of files that do (the
    others go to `problems`), or None when there is no file."""
    pattern = layout.glob(source.template)
    matching = _matching(con, pattern)
    if not matching:
        return None
    if _readable(probe, source, pattern) is None:
        return pattern
    files = []
    for file in matching:
        if error := _readable(probe, source, [file]):
            problems.append((source.view, file, error))
        else:
            files.append(file)
    return files


def _build(con: duckdb.DuckDBPyConnection, layout: Layout) -> list[tuple[str, str, str]]:
    """Create every view; a file that cannot be read is left out and returned as (view, path, error)."""
    problems: list[tuple[str, str, str]] = []
    con.execute(_labels_sql(layout, con))
    with duckdb.connect() as probe:
        files = {source.view: _readable_files(con, probe, layout, source, problems) for source in SOURCES}
    for source in SOURCES:
        doc = f"{source.doc} Files: <root>/{source.template.pattern}"
        for statement in (source.create_sql(files[source.view]), *_comment_sql(source.view, doc, source.columns)):
            con.execute(statement)
    for statement in (CURRICULUM_SQL, *_comment_sql("curriculum", CURRICULUM_DOC, CURRICULUM_COLUMNS), RERANK_SQL):
        con.execute(statement)
    con.execute(f"COMMENT ON MACRO TABLE rerank IS {_literal(RERANK_DOC)}")
    con.execute(RANKINGS_SQL)
    con.execute(f"COMMENT ON VIEW rankings IS {_literal(RANKINGS_DOC)}")
    prompts = next(s for s in SOURCES if s.view == "prompts")
    provenance = _json_sql(con, layout, tree.PROVENANCE, _PROVENANCE_COLUMNS)
    con.execute(DATASET_VERSIONS_SQL.format(all_prompts=prompts.body_sql(files["prompts"], every_version=True), provenance=provenance))
    con.execute(f"COMMENT ON VIEW dataset_versions IS {_literal(DATASET_VERSIONS_DOC)}")
    rows = ", ".join(f"({_literal(v)}, {_literal(p)}, {_literal(e)})" for v, p, e in problems)
    empty = "SELECT CAST(NULL AS VARCHAR) AS view, CAST(NULL AS VARCHAR) AS path, CAST(NULL AS VARCHAR) AS error WHERE false"
    con.execute(f"CREATE VIEW catalog_problems AS {f'SELECT * FROM (VALUES {rows}) AS t(view, path, error)' if problems else empty}")
    con.execute(f"COMMENT ON VIEW catalog_problems IS {_literal(PROBLEMS_DOC)}")
    con.execute(f"COMMENT ON VIEW {LABELS} IS {_literal(LABELS_DOC)}")
    return problems


def refresh_catalog(root: Path, inputs: str | None = None) -> list[tuple[str, str, str]]:
    """(Re)write the catalog file with views over what is stored under `root` now.

    Run it after a kind of artifact appears for the first time (until then its view is empty,
    typed); more files of a kind that existed are seen without a refresh. A file that cannot
    be read is left out of its view and listed in `catalog_problems` (and returned as
    (view, path, error)), so one bad artifact never breaks the others. The new database is built in a temporary file and renamed over
    the old one: no lock is taken or waited for, and readers of the old file are not disturbed.
    `inputs` is the digest of what it reads when the caller has it already (`refresh_if_changed`);
    it is recorded beside the catalog for the next check.
    """
    root = Path(root).resolve()
    target = catalog_path(root)
    started = time.time()
    # Read before the build: a file that appears during it makes the next check rebuild again.
    inputs = inputs or _inputs_digest(Layout(root))
    with atomic_path(target) as tmp:
        tmp.unlink()  # DuckDB refuses to open the empty placeholder as a database
        wal = tmp.with_name(tmp.name + ".wal")
        try:
            with duckdb.connect(str(tmp)) as con:
                con.begin()  # one commit instead of one per statement: about 6x faster
                problems = _build(con, Layout(root))
                con.commit()
        finally:
            wal.unlink(missing_ok=True)  # only left behind by a failed build: closing checkpoints it
    write_text_atomic(json.dumps({"inputs": inputs, "catalog": _file_stamp(target), "problems": problems}), Layout(root).catalog_state)
    sweep_temporary(root, started)
    return problems


def _inputs_digest(layout: Layout) -> str:
    """One digest of everything a refresh reads: the path, size, modification time and inode of
    each file its globs match, and the code that writes the views (a new view is a change too).
    The inode: every artifact is written under a temporary name and renamed, so a rewrite within
    the file system's timestamp tick, at the same size, is still a change."""
    digest = hashlib.blake2b(digest_size=16)
    for module in (__file__, tree.__file__, registry.__file__):
        digest.update(Path(module).read_bytes())
    labels = (tree.DATASET_LABEL, tree.LOADED_LABEL, tree.PROVENANCE)
    patterns = [*(layout.glob(template) for template in labels), *(layout.glob(source.template) for source in SOURCES)]
    # Python's glob reads these patterns as DuckDB does, without a DuckDB database (30 ms to open).
    files = sorted({file for pattern in patterns for file in glob.glob(pattern, recursive=True)})
    for file in files:
        stat = os.stat(file)
        digest.update(f"{file}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ino}\n".encode())
    return digest.hexdigest()


def _file_stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def refresh_if_changed(root: Path) -> list[tuple[str, str, str]]:
    """`refresh_catalog(root)` unless nothing it reads has changed since the last refresh (the
    catalog file included: a replaced or damaged file is rebuilt); returns what the catalog
    leaves out either way. A refresh costs a few hundred milliseconds, the check a few."""
    layout = Layout(Path(root).resolve())
    inputs, state_path = _inputs_digest(layout), layout.catalog_state
    try:
        state = json.loads(state_path.read_text())
        if state["inputs"] == inputs and state["catalog"] == _file_stamp(layout.catalog):
            return [tuple(problem) for problem in state["problems"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no state, or one this code did not write: rebuild
    return refresh_catalog(layout.root, inputs)


def connect_readonly(
    root: Path, sandbox: bool = True, memory_limit: str | None = None, settings: Sequence[tuple[str, str]] = (),
) -> duckdb.DuckDBPyConnection:
    """A read-only connection whose default catalog is the refreshed file (built if missing).

    The file is attached to a fresh in-memory database instead of opened with
    `duckdb.connect(path)`: DuckDB caches databases by path within a process, so a second
    connect after a refresh would get the old catalog. With `sandbox`, the connection can
    read files under `root` only, cannot load or install extensions, and its configuration
    is locked (together with `query`'s statement check, a shell that cannot write). With
    `memory_limit`, DuckDB spills large sorts and joins to a temporary folder under the root.
    `settings`: more (name, value) DuckDB settings, made before the configuration is locked.
    """
    root = Path(root).resolve()
    path = catalog_path(root)
    if not path.exists():
        refresh_catalog(root)
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH {_literal(str(path))} AS {CATALOG_NAME} (READ_ONLY)")
        con.execute(f"USE {CATALOG_NAME}")
        if memory_limit:
            con.execute(f"SET memory_limit = {_literal(memory_limit)}")
            con.execute(f"SET temp_directory = {_literal(str(root / SPILL_DIR))}")
        for name, value in settings:
            con.execute(f"SET {ident(name)} = {_literal(value)}")
        if sandbox:
            con.execute(f"SET allowed_directories = [{_literal(str(root) + '/')}]")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


class ReadOnlyError(ValueError):
    """A statement that would write or reach outside the catalog, refused before it runs."""


# Statement types that only read; COPY, ATTACH, INSTALL/LOAD, CREATE, SET, EXPORT ... are refused.
_READ_ONLY = {"SELECT", "EXPLAIN", "PRAGMA", "CALL"}


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    for statement in con.extract_statements(sql):
        kind = statement.type.name
        if kind not in _READ_ONLY:
            raise ReadOnlyError(
                f"{kind} statements are refused: the catalog is read-only (for full power: duckdb -readonly <root>/gainrl.duckdb)"
            )


# The artifacts the last refresh left out, one row each; `gainrl status` reads it in its own statement.
PROBLEMS_SQL = 'SELECT "view", path, "error" FROM catalog_problems'


def catalog_problems(root: Path) -> list[dict[str, str]]:
    """The artifacts the last refresh left out (view, path, error)."""
    with connect_readonly(root) as con:
        return [dict(zip(("view", "path", "error"), row)) for row in con.execute(PROBLEMS_SQL).fetchall()]


def query(root: Path, sql: str, limit: int | None = None) -> pl.DataFrame:
    """Run `sql` on a read-only catalog connection; with `limit`, stop reading after that many rows.

    The limit bounds memory for an unbounded query typed at a prompt (`SELECT * FROM tokens`)
    without changing its meaning, as wrapping it in another LIMIT could for some statements.
    """
    import polars as pl
    import pyarrow as pa

    with connect_readonly(root) as con:
        check_read_only(con, sql)
        relation = con.sql(sql)
        if relation is None:
            return pl.DataFrame()
        if limit is None:
            return relation.pl()
        reader = relation.to_arrow_reader()
        batches, rows = [], 0
        for batch in reader:
            batches.append(batch)
            rows += batch.num_rows
            if rows >= limit:
                break
        return pl.DataFrame(pa.Table.from_batches(batches, schema=reader.schema).slice(0, limit))


def describe_error(error: duckdb.Error) -> str:
    """One line for a DuckDB error: its message without the echoed query and caret lines."""
    lines = []
    for line in str(error).splitlines():
        if line.startswith("LINE "):
            break
        if line.strip():
            lines.append(line.strip())
    return " ".join(lines)
