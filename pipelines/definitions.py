"""The Definitions that `dagster dev -w workspace.yaml` serves."""

import dagster as dg

from . import assets, checks, diagnostics_assets, training_assets
from .automation import (
    diagnose_job,
    new_checkpoint_sensor,
    prepare_job,
    rescore_job,
    rescore_latest_schedule,
    train_job,
)
from .resources import (
    CheckpointStoreResource,
    DatasetResource,
    DiagnosticsResource,
    HeldOutResource,
    ModelResource,
    ScoringResource,
    StorageResource,
    TrainingResource,
)


def resources() -> dict[str, dg.ConfigurableResource]:
    """Default resources: the embedded dataset and model under the default storage root."""
    return {
        "storage": StorageResource(),
        "checkpoint_store": CheckpointStoreResource(),
        "dataset": DatasetResource(),
        "model": ModelResource(),
        "scoring": ScoringResource(),
        "training": TrainingResource(),
        "held_out": HeldOutResource(),
        "diagnostics": DiagnosticsResource(),
    }


defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets, training_assets, diagnostics_assets]),
    asset_checks=dg.load_asset_checks_from_modules([checks]),
    jobs=[prepare_job, rescore_job, diagnose_job, train_job],
    sensors=[new_checkpoint_sensor],
    schedules=[rescore_latest_schedule],
    resources=resources(),
)
