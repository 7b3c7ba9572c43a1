"""The training job, and the sensor that keeps the training-run partitions in step with the runs file."""

import dagster as dg

from ... import partitions
from ...resources import TrainingResource

train_job = dg.define_asset_job(
    "train",
    selection=dg.AssetSelection.assets("training_run"),
    description="A GRPO run on the base checkpoint's curriculum; its checkpoints trigger rescoring.",
)


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def training_runs_sensor(context: dg.SensorEvaluationContext, training: TrainingResource) -> dg.SensorResult | dg.SkipReason:
    """Adds a `training_runs` partition for each run name of the runs file not yet known.

    Names removed from the file keep their partition, so the runs they made stay browsable;
    materializing one fails with a clear error.
    """
    known = set(context.instance.get_dynamic_partitions(partitions.training_runs.name))
    new = sorted(set(training.runs()) - known)
    if not new:
        return dg.SkipReason("every run of the runs file is a partition")
    return dg.SensorResult(dynamic_partitions_requests=[partitions.training_runs.build_add_request(new)])
