"""Data checks on published pass rates; each returns whether it passed and numbers to show why."""

from __future__ import annotations

import json
from pathlib import Path

from gainrl_ops.core.checks import CheckOutcome
from gainrl_ops.difficulty.store import SUMMARY

# p(1 - p) and n_correct / k are computed in float64: anything further off was not computed from them.
_EXACT = 1e-12


def every_sampled_prompt_once(prompts: Path, pass_rates: Path) -> CheckOutcome:
    """One row per sampled prompt: no id twice, none outside the dataset version, and as many
    rows as the estimate asked for (its `sample`, or every prompt)."""
    import polars as pl

    expected = pl.read_parquet(prompts, columns=["id"])["id"]
    rated = pl.read_parquet(pass_rates, columns=["id"])["id"]
    sample = json.loads((Path(pass_rates).parent / SUMMARY).read_text())["config"]["sample"]
    wanted = expected.len() if sample is None else min(sample, expected.len())
    duplicates = rated.len() - rated.n_unique()
    unknown = rated.filter(~rated.is_in(expected.implode())).len()
    return CheckOutcome(
        duplicates == unknown == 0 and rated.len() == wanted,
        {"prompts": expected.len(), "wanted": wanted, "rows": rated.len(), "duplicates": duplicates, "unknown": unknown},
    )


def pass_rates_consistent(pass_rates: Path) -> CheckOutcome:
    """pass_rate = n_correct / k in [0, 1], learnability = p(1 - p), and the ranks are 1..n each once."""
    import polars as pl

    frame = pl.read_parquet(pass_rates, columns=["id", "pass_rate", "learnability", "n_correct", "k", "pass_rate_rank", "learnability_rank"])
    p = pl.col("pass_rate")
    bad = frame.filter(
        ~p.is_between(0.0, 1.0)
        | ((p - pl.col("n_correct") / pl.col("k")).abs() > _EXACT)
        | ((pl.col("learnability") - p * (1 - p)).abs() > _EXACT)
    ).fill_null(True)
    ranks = {name: sorted(frame[name].to_list()) == list(range(1, frame.height + 1)) for name in ("pass_rate_rank", "learnability_rank")}
    return CheckOutcome(
        bad.is_empty() and all(ranks.values()),
        {"rows": frame.height, "inconsistent_rows": bad.height, "first_bad_ids": ", ".join(bad["id"].head(5).to_list()),
         **{f"{name}_is_permutation": str(ok) for name, ok in ranks.items()}},
    )
