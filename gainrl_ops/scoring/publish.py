"""Score parts and their publication: the files a scoring run writes, without torch.

A run writes one part per shard into a staging folder beside the published scores; `publish`
checks that every part is there and was made from this run's shards and context, compacts them
into the ranked `scores.parquet` and swaps the folder in. The Dagster plan and publish steps
import this module only, so they start without loading a model library.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from gainrl_ops.core import columns
from gainrl_ops.core.columns import arrow_schema, percentile_sql, rank_sql
from gainrl_ops.core.layout import SCORE_PART, SCORE_SUMMARY, SCORES, glob_escape
from gainrl_ops.core.storage import (
    ROW_GROUP_ROWS,
    atomic_path,
    replace_directory,
    sweep_temporary,
    write_text_atomic,
)
from gainrl_ops.data.shards import Shard, ShardSet

SCORE_SCHEMA = arrow_schema(columns.SCORE)
SUMMARY = SCORE_SUMMARY.name()
# Part-file metadata: the inputs a part was made from (`part_tag`), and how its shard was run.
PART_KEY = b"gainrl.part"
PREFIX_KEY = b"gainrl.prefix"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreContext:
    """What every score row records about how it was produced (built by `ScoringPlan.context`)."""

    dataset: str
    dataset_version: str
    checkpoint: str
    model: str
    tokenizer: str
    prompt_fingerprint: str
    dtype: str


@dataclass(frozen=True)
class ScoreSummary:
    """A scoring run; per shard, `prefix_tokens` is how many leading tokens were run once for
    all its prompts (0: every prompt run whole) and `prefix_notes` why none were ("" if some)."""

    directory: Path
    rows: int
    parts_written: int
    parts_reused: int
    code_version: str
    prefix_tokens: tuple[int, ...]
    prefix_notes: tuple[str, ...]

    @property
    def scoring_mode(self) -> str:
        """One line: how the shards were run."""
        shared = [n for n in self.prefix_tokens if n > 0]
        whole = len(self.prefix_tokens) - len(shared)
        parts = []
        if shared:
            span = f"{min(shared)}" if min(shared) == max(shared) else f"{min(shared)}-{max(shared)}"
            parts.append(f"shared prefix on {len(shared)} of {len(self.prefix_tokens)} shards ({span} tokens run once per shard)")
        if whole:
            reasons = "; ".join(dict.fromkeys(note for note in self.prefix_notes if note))
            parts.append(f"full prefill on {whole} of {len(self.prefix_tokens)} shards ({reasons})")
        return ", ".join(parts)


def part_tag(shard: Shard, context: ScoreContext, inter_weight: float, code: str) -> bytes:
    """What a part records it was made from: its shard's digest, the context, the weight and the scoring code."""
    return json.dumps({"shard": shard.digest, "context": asdict(context), "w": inter_weight, "code": code}, sort_keys=True).encode()


def part_path(out_dir: Path, shard: Shard) -> Path:
    return Path(out_dir) / SCORE_PART.inside(SCORE_SUMMARY).relative(index=shard.index)


def ranked_path(out_dir: Path) -> Path:
    """The compacted, ranked scores of a scores folder (what the SQL views read)."""
    return Path(out_dir) / SCORES.inside(SCORE_SUMMARY).relative()


def compact(out_dir: Path, row_group_size: int = ROW_GROUP_ROWS) -> Path:
    """Merge a scores folder's parts into one Parquet file sorted by rank, with the rank
    (1 = highest angle_score, ties by id, unscored last), the prompt count and the percentile
    stored, so no query recomputes a window. Non-finite components are written as NULL."""
    parts = glob_escape(str(out_dir)) + "/" + SCORE_PART.inside(SCORE_SUMMARY).glob()
    stored = ", ".join(f"{column.value_sql()} AS {column.name}" for column in columns.SCORE)
    target = ranked_path(out_dir)
    with atomic_path(target) as tmp, duckdb.connect() as con:
        con.execute(f"""
            COPY (
                SELECT *, {percentile_sql("rank", "n_prompts")} AS percentile FROM (
                    SELECT *, {rank_sql()} AS rank, count(*) OVER () AS n_prompts
                    FROM (SELECT {stored} FROM read_parquet('{parts}'))
                ) ORDER BY rank
            ) TO '{tmp}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {row_group_size})
        """)
    return target


def _part_tags(out_dir: Path, shards: ShardSet, context: ScoreContext) -> list[dict[str, object]]:
    """The tag of every shard's part; each must exist and have been made from that shard and
    `context`, so a published folder never mixes runs, versions or checkpoints."""
    missing = [s.path.name for s in shards.shards if not part_path(out_dir, s).exists()]
    if missing:
        raise RuntimeError(f"{out_dir}: no scores for shards {missing}")
    tags = []
    for shard in shards.shards:
        path = part_path(out_dir, shard)
        tag = json.loads((pq.read_schema(path).metadata or {}).get(PART_KEY, b"{}"))
        if tag.get("shard") != shard.digest or tag.get("context") != asdict(context):
            raise RuntimeError(f"{path}: made from other shards or another checkpoint, version or model than this run; score it again")
        tags.append(tag)
    return tags


def write_summary(out_dir: Path, shards: ShardSet, context: ScoreContext, written: int) -> ScoreSummary:
    """Check that every shard has its part from this context, then record the run in `summary.json`."""
    codes = {tag["code"] for tag in _part_tags(out_dir, shards, context)}
    if len(codes) != 1:
        raise RuntimeError(f"{out_dir}: parts from {len(codes)} versions of the scoring code ({sorted(codes)}); score them again")
    prefixes = [json.loads(pq.read_schema(part_path(out_dir, s)).metadata[PREFIX_KEY]) for s in shards.shards]
    summary = ScoreSummary(
        Path(out_dir), shards.rows, written, len(shards.shards) - written, codes.pop(),
        tuple(p["tokens"] for p in prefixes), tuple(p["note"] for p in prefixes),
    )
    log.info("%s: %s", out_dir, summary.scoring_mode)
    write_text_atomic(
        json.dumps({**asdict(summary), "directory": str(out_dir), **asdict(context)}, indent=2),
        Path(out_dir) / SUMMARY,
    )
    return summary


def sweep_staging(final: Path, staging: Path) -> None:
    """Remove what interrupted runs left beside `final` and in `staging` (temporary part files,
    retired folders), before a run starts writing there."""
    started = time.time()
    parts = SCORE_PART.inside(SCORE_SUMMARY).relative(index=0)
    for folder in (Path(final).parent, Path(staging), (Path(staging) / parts).parent, (Path(final) / parts).parent):
        for path in sweep_temporary(folder, started):
            log.info("removed %s, left by an interrupted run", path)


def publish(staging: Path, final: Path, shards: ShardSet, context: ScoreContext, written: int) -> ScoreSummary:
    """Check the complete staging folder, compact its parts into the ranked scores file, then
    swap it in place of the published scores, so a reader sees the old scores or the new
    ones, never a part of a run. The summary is written once the scores are in place."""
    _part_tags(staging, shards, context)
    compact(staging)
    replace_directory(staging, final)
    return write_summary(final, shards, context, written)
