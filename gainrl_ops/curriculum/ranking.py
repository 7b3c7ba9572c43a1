"""The ranked curriculum of one checkpoint, as a Parquet snapshot of the SQL ranking."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.parquet as pq

from gainrl_ops.core.keys import ScoresKey
from gainrl_ops.core.layout import Layout
from gainrl_ops.core.storage import atomic_path
from gainrl_ops.curriculum.catalog import connect_readonly
from gainrl_ops.scoring.checkpoints import CheckpointRecord

if TYPE_CHECKING:  # imported where used: loading the Dagster definitions should not pay for polars
    import polars as pl

SNAPSHOT_MEMORY = "300MB"
# The curriculum's LEFT JOIN builds its hash table on the prompts of the one dataset version.
# DuckDB may flip it to build on the scores, whose rows it underestimates (1 for 1M) once the
# store holds other datasets' scores: that table of every score column overflows the limit
# (1M prompts: out of memory even at 500 MB; built on the prompts, 3.3 s under 300 MB).
SNAPSHOT_SETTINGS = (("disabled_optimizers", "build_side_probe_side"),)
# Parquet key of a snapshot's provenance: dataset, dataset_version, prompt_fingerprint,
# checkpoint and the scoring code_version of its rows (JSON), what exports stamp on their files.
SNAPSHOT_KEY = b"gainrl.ranking"


def export_ranking(layout: Layout, key: ScoresKey) -> Path:
    """Snapshot the `curriculum` view of one checkpoint to Parquet, in rank order (rank 1 =
    highest angle score), so SQL users and the training sampler see the same order and a
    training run keeps it. DuckDB streams the rows to the file: memory stays flat in the size
    of the dataset."""
    where = " AND ".join(
        f"{column} = '{value}'"  # plain names and hex digests only (checked by Layout)
        for column, value in (
            ("dataset", key.dataset), ("dataset_version", key.version), ("prompt_fingerprint", key.prompt_fingerprint), ("checkpoint", key.checkpoint),
        )
    )
    target = layout.ranking(key)
    # A memory limit makes DuckDB spill the sort instead of holding every row (1M rows: about
    # 390 MB peak instead of 0.9-1.5 GB, for twice the time).
    with connect_readonly(layout.root, memory_limit=SNAPSHOT_MEMORY, settings=SNAPSHOT_SETTINGS) as con:
        ((rows, code_version),) = con.execute(
            f"SELECT count(*), string_agg(DISTINCT code_version, ',' ORDER BY code_version) FROM scores WHERE {where}"
        ).fetchall()
        if rows == 0:
            raise ValueError(f"no scores for dataset {key.dataset!r} (version {key.version}), prompts {key.prompt_fingerprint}, checkpoint {key.checkpoint}")
        info = {"dataset": key.dataset, "dataset_version": key.version, "prompt_fingerprint": key.prompt_fingerprint, "checkpoint": key.checkpoint,
                "code_version": code_version}
        quoted = json.dumps(info).replace("'", "''")
        with atomic_path(target) as tmp:
            con.execute(
                f"COPY (SELECT * FROM curriculum WHERE {where} ORDER BY rank) TO '{tmp}' "
                f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 131072, KV_METADATA {{'{SNAPSHOT_KEY.decode()}': '{quoted}'}})"
            )
    return target


def snapshot_info(path: Path) -> dict[str, str]:
    """What a ranking snapshot was made from (see SNAPSHOT_KEY), read from its footer."""
    metadata = pq.read_schema(path).metadata or {}
    if SNAPSHOT_KEY not in metadata:
        raise ValueError(f"{path}: ranking snapshot without its provenance (made by an older version); materialize curriculum again")
    return json.loads(metadata[SNAPSHOT_KEY])


def ranking_preview(path: Path, rows: int = 10) -> tuple[int, pl.DataFrame, pl.DataFrame]:
    """(prompts, the top `rows`, the bottom `rows`) of a ranking snapshot, reading only the
    first and last row groups."""
    import polars as pl

    file = pq.ParquetFile(path)
    last = file.metadata.num_row_groups - 1
    top = pl.from_arrow(file.read_row_group(0)).head(rows)
    bottom = pl.from_arrow(file.read_row_group(last)).tail(rows)
    return file.metadata.num_rows, top, bottom


def existing_ranking(layout: Layout, key: ScoresKey) -> Path:
    """The checkpoint's ranking snapshot, which training and diagnostics read; it must exist."""
    path = layout.ranking(key)
    if not path.exists():
        raise FileNotFoundError(f"{path}: materialize curriculum for checkpoint {key.checkpoint} first")
    return path


def ranked_prompts(layout: Layout, dataset: str, version: str, ranking: Path, columns: Sequence[str] = ("answer",)) -> pl.DataFrame:
    """The ranking snapshot in rank order, joined with `columns` of the dataset's prompts."""
    import polars as pl

    prompts = pl.read_parquet(layout.prompts(dataset, version), columns=["id", *columns])
    return pl.read_parquet(ranking).sort("rank").join(prompts, on="id", how="left", maintain_order="left")


# Orders that need no model run, from the catalog: shortest question first (question span in
# tokens, under the prompt fingerprint's tokenizer and template), or easiest first.
_ORDERS = {
    "length": """
        SELECT p.id, p.problem, p.answer, p.difficulty, t.question_end - t.question_start AS question_tokens
        FROM prompts p JOIN tokens t ON t.dataset = p.dataset AND t.dataset_version = p.dataset_version AND t.id = p.id
        WHERE p.dataset = $dataset AND p.dataset_version = $version AND t.prompt_fingerprint = $prompts
        ORDER BY question_tokens, p.id""",
    "difficulty": """
        SELECT p.id, p.problem, p.answer, p.difficulty, t.question_end - t.question_start AS question_tokens
        FROM prompts p LEFT JOIN tokens t
          ON t.dataset = p.dataset AND t.dataset_version = p.dataset_version AND t.id = p.id AND t.prompt_fingerprint = $prompts
        WHERE p.dataset = $dataset AND p.dataset_version = $version
        ORDER BY p.difficulty NULLS LAST, p.id""",
}
ORDERS = tuple(_ORDERS)


def ordered_prompts(layout: Layout, dataset: str, version: str, prompt_fingerprint: str, by: str) -> pl.DataFrame:
    """The dataset's prompts in a control order read from the catalog (no model run), with
    rank 1 first: "length" (fewest question tokens first) or "difficulty" (lowest
    difficulty first; prompts without one go last). Ties are broken by id.

    Columns: id, problem, answer, difficulty, question_tokens, rank."""
    import polars as pl

    if by not in _ORDERS:
        raise ValueError(f"order {by!r} is not one of {ORDERS}")
    params = {"dataset": dataset, "version": version, "prompts": prompt_fingerprint}
    with connect_readonly(layout.root) as con:
        frame = con.sql(_ORDERS[by], params=params).pl()
    if frame.is_empty():
        raise ValueError(
            f"dataset {dataset!r} (version {version}, prompts {prompt_fingerprint}): no tokenized prompts in the catalog; "
            "materialize raw_dataset and tokenized_shards first"
        )
    if by == "difficulty" and frame["difficulty"].null_count() == frame.height:
        raise ValueError(
            f"{layout.prompts(dataset, version)}: dataset {dataset!r} has no difficulty (no `difficulty` or `level` field in its "
            "input), so it cannot be ordered easiest first; use sampler length or gainrl"
        )
    return frame.with_columns(rank=pl.int_range(1, frame.height + 1, dtype=pl.Int64))


def previous_ranking(
    layout: Layout, key: ScoresKey, records: Sequence[CheckpointRecord], current: CheckpointRecord
) -> tuple[CheckpointRecord, pl.DataFrame] | None:
    """The ranking to compare with: the checkpoint's parent if it was ranked, else the
    latest checkpoint registered before it that was (same dataset version and prompts as `key`)."""
    import polars as pl

    earlier = [r for r in records if r.registered_at < current.registered_at and r.fingerprint != current.fingerprint]
    candidates = [r for r in earlier if r.fingerprint == current.parent] + earlier[::-1]
    for record in candidates:
        path = layout.ranking(key.with_checkpoint(record.fingerprint))
        if path.exists():
            return record, pl.read_parquet(path)
    return None
