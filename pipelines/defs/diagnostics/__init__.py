"""Diagnostics domain: does the angle score predict gradient strength for a checkpoint?"""

import dagster as dg

from . import assets, checks
from .automation import diagnose_job

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([checks]),
    jobs=[diagnose_job],
)
