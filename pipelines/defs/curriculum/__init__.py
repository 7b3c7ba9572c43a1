"""Curriculum domain: dataset, shards, scores per checkpoint, ranking and report; rescoring automation."""

import dagster as dg

from . import assets, checks
from .automation import (
    new_checkpoint_sensor,
    prepare_job,
    rescore_job,
    rescore_latest_schedule,
)

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([checks]),
    jobs=[prepare_job, rescore_job],
    sensors=[new_checkpoint_sensor],
    schedules=[rescore_latest_schedule],
)
