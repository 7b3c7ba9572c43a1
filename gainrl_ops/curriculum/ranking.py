"""The ranked curriculum of one checkpoint, as a Parquet snapshot of the SQL ranking."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from gainrl_ops.core.layout import Layout
from gainrl_ops.core.storage import write_parquet_atomic
from gainrl_ops.curriculum.catalog import connect_readonly
from gainrl_ops.scoring.checkpoints import CheckpointRecord


def export_ranking(layout: Layout, dataset: str, version: str, prompt_fingerprint: str, checkpoint: str) -> tuple[pl.DataFrame, Path]:
    """Rank 1 = highest angle score. The ranking is the `curriculum` view's, so SQL users and
    the training sampler see the same order; the snapshot pins it for a training run."""
    with connect_readonly(layout.root) as con:
        frame = con.sql(
            "SELECT * FROM curriculum WHERE dataset = ? AND dataset_version = ? AND prompt_fingerprint = ? AND checkpoint = ? ORDER BY rank",
            params=[dataset, version, prompt_fingerprint, checkpoint],
        ).pl()
    if frame.is_empty():
        raise ValueError(f"no scores for dataset {dataset!r} (version {version}), prompts {prompt_fingerprint}, checkpoint {checkpoint}")
    target = layout.ranking(dataset, version, prompt_fingerprint, checkpoint)
    write_parquet_atomic(frame.to_arrow(), target)
    return frame, target


def existing_ranking(layout: Layout, dataset: str, version: str, prompt_fingerprint: str, checkpoint: str) -> Path:
    """The checkpoint's ranking snapshot, which training and diagnostics read; it must exist."""
    path = layout.ranking(dataset, version, prompt_fingerprint, checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"{path}: materialize curriculum for checkpoint {checkpoint} first")
    return path


def ranked_prompts(layout: Layout, dataset: str, version: str, ranking: Path, columns: Sequence[str] = ("answer",)) -> pl.DataFrame:
    """The ranking snapshot in rank order, joined with `columns` of the dataset's prompts."""
    prompts = pl.read_parquet(layout.prompts(dataset, version), columns=["id", *columns])
    return pl.read_parquet(ranking).sort("rank").join(prompts, on="id", how="left", maintain_order="left")


def previous_ranking(
    layout: Layout, dataset: str, version: str, prompt_fingerprint: str, records: Sequence[CheckpointRecord], current: CheckpointRecord
) -> tuple[CheckpointRecord, pl.DataFrame] | None:
    """The ranking to compare with: the checkpoint's parent if it was ranked, else the
    latest checkpoint registered before it that was."""
    earlier = [r for r in records if r.registered_at < current.registered_at and r.fingerprint != current.fingerprint]
    candidates = [r for r in earlier if r.fingerprint == current.parent] + earlier[::-1]
    for record in candidates:
        path = layout.ranking(dataset, version, prompt_fingerprint, record.fingerprint)
        if path.exists():
            return record, pl.read_parquet(path)
    return None
