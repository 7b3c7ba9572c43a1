"""Training domain: GRPO runs on the curriculum and held-out evaluation of every checkpoint."""

import dagster as dg

from . import assets
from .automation import train_job, training_runs_sensor

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    jobs=[train_job],
    sensors=[training_runs_sensor],
)
