"""Difficulty domain: reward-based signals per checkpoint (pass rates, learnability) beside the angle."""

import dagster as dg

from . import assets, checks
from .automation import estimate_difficulty_job

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([checks]),
    jobs=[estimate_difficulty_job],
)
