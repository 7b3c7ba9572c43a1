"""The difficulty job: run on demand, since it samples k completions per prompt."""

import dagster as dg

estimate_difficulty_job = dg.define_asset_job(
    "estimate_difficulty",
    selection=dg.AssetSelection.assets("pass_rates"),
    description="Sample k completions per prompt (or per prompt of a seeded sample) with one checkpoint and store each prompt's pass rate and learnability.",
)
