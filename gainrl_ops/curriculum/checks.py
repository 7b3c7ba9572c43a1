"""Data checks on shards, scores and rankings; each returns whether it passed and numbers to show why."""

from __future__ import annotations

from pathlib import Path

from gainrl_ops.core.checks import CheckOutcome
from gainrl_ops.core.layout import SHARD


def every_prompt_scored_once(prompts: Path, scores: Path) -> CheckOutcome:
    """Each prompt id of the dataset has exactly one score row, and no other id has one."""
    import polars as pl

    expected = pl.read_parquet(prompts, columns=["id"])["id"]
    scored = pl.read_parquet(scores, columns=["id"])["id"]
    duplicates = scored.len() - scored.n_unique()
    missing = expected.filter(~expected.is_in(scored.implode())).len()
    unknown = scored.filter(~scored.is_in(expected.implode())).len()
    return CheckOutcome(
        duplicates == missing == unknown == 0,
        {"prompts": expected.len(), "score_rows": scored.len(), "duplicates": duplicates, "missing": missing, "unknown": unknown},
    )


def scores_finite(scores: Path) -> CheckOutcome:
    """No NaN, infinite or missing value in any score component of the ranked scores file."""
    import polars as pl

    frame = pl.read_parquet(scores, columns=["id", "c_intra", "c_inter", "angle_score"])
    # Non-finite values are stored as NULL (a one-token question has no c_intra), so both count.
    bad = frame.filter(pl.any_horizontal(~pl.col("c_intra", "c_inter", "angle_score").is_finite().fill_null(False)))
    return CheckOutcome(bad.is_empty(), {"non_finite_rows": bad.height, "first_bad_ids": ", ".join(bad["id"].head(5).to_list())})


def spans_not_empty(shards_dir: Path, expect_system: bool) -> CheckOutcome:
    """Every prompt has a question span of at least two tokens (c_intra needs a pair) and,
    with a system prompt, a non-empty system span."""
    import polars as pl

    frame = pl.read_parquet(Path(shards_dir) / SHARD.name_glob(), columns=["id", "system_start", "system_end", "question_start", "question_end"])
    short_question = frame.filter(pl.col("question_end") - pl.col("question_start") < 2)
    empty_system = frame.filter(pl.col("system_end") <= pl.col("system_start")) if expect_system else frame.clear()
    return CheckOutcome(
        short_question.is_empty() and empty_system.is_empty(),
        {"prompts": frame.height, "short_question_spans": short_question.height, "empty_system_spans": empty_system.height},
    )


def rank_is_permutation(curriculum: Path) -> CheckOutcome:
    """Ranks are exactly 1..n, each once, and follow the angle score downwards."""
    import polars as pl

    frame = pl.read_parquet(curriculum, columns=["rank", "angle_score"]).sort("rank")
    n = frame.height
    is_permutation = frame["rank"].to_list() == list(range(1, n + 1))
    ordered = bool((frame["angle_score"].diff().drop_nulls() <= 0).all())
    return CheckOutcome(is_permutation and ordered, {"prompts": n, "is_permutation": str(is_permutation), "ordered_by_score": str(ordered)})
