"""The ranked curriculum of one checkpoint, as a Parquet snapshot of the SQL ranking."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from .catalog import connect_readonly
from .checkpoints import CheckpointRecord
from .storage import write_parquet_atomic


def curriculum_path(root: Path, dataset: str, prompt_fingerprint: str, checkpoint: str) -> Path:
    return Path(root) / "curriculum" / dataset / prompt_fingerprint / f"{checkpoint}.parquet"


def export_curriculum(root: Path, dataset: str, prompt_fingerprint: str, checkpoint: str) -> tuple[pl.DataFrame, Path]:
    """Rank 1 = highest angle score. The ranking is the `curriculum` view's, so SQL users and
    the training sampler see the same order; the snapshot pins it for a training run."""
    with connect_readonly(root) as con:
        frame = con.sql(
            "SELECT * FROM curriculum WHERE dataset = ? AND prompt_fingerprint = ? AND checkpoint = ? ORDER BY rank",
            params=[dataset, prompt_fingerprint, checkpoint],
        ).pl()
    if frame.is_empty():
        raise ValueError(f"no scores for dataset {dataset!r}, prompts {prompt_fingerprint}, checkpoint {checkpoint}")
    target = curriculum_path(root, dataset, prompt_fingerprint, checkpoint)
    write_parquet_atomic(frame.to_arrow(), target)
    return frame, target


def previous_curriculum(
    root: Path, dataset: str, prompt_fingerprint: str, records: Sequence[CheckpointRecord], current: CheckpointRecord
) -> tuple[CheckpointRecord, pl.DataFrame] | None:
    """The curriculum to compare with: the checkpoint's parent if it was ranked, else the
    latest checkpoint registered before it that was."""
    earlier = [r for r in records if r.registered_at < current.registered_at and r.fingerprint != current.fingerprint]
    candidates = [r for r in earlier if r.fingerprint == current.parent] + earlier[::-1]
    for record in candidates:
        path = curriculum_path(root, dataset, prompt_fingerprint, record.fingerprint)
        if path.exists():
            return record, pl.read_parquet(path)
    return None
