"""Jobs of the curriculum domain, the new-checkpoint sensor and the rescoring schedule."""

import json
import os

import dagster as dg

from ... import partitions
from ...resources import CheckpointStoreResource, StorageResource

prepare_job = dg.define_asset_job(
    "prepare_dataset",
    selection=dg.AssetSelection.assets("raw_dataset", "base_checkpoint", "tokenized_shards"),
    description="Load the dataset, register the base model and tokenize the prompts.",
)
rescore_job = dg.define_asset_job(
    "rescore_checkpoint",
    selection=dg.AssetSelection.assets("angle_scores", "curriculum", "curriculum_report", "evaluation"),
    description="Score every prompt with one checkpoint, rank them, report, and evaluate it on held-out problems.",
)


@dg.sensor(job=rescore_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def new_checkpoint_sensor(
    context: dg.SensorEvaluationContext, storage: StorageResource, checkpoint_store: CheckpointStoreResource
) -> dg.SensorResult | dg.SkipReason:
    """Registers each new checkpoint of the store as a partition and requests its scoring.

    The run key is the checkpoint fingerprint and the cursor remembers the fingerprints
    already seen, so a checkpoint is scored once however often it is listed.
    """
    seen = set(json.loads(context.cursor or "[]"))
    known = set(context.instance.get_dynamic_partitions(partitions.checkpoints.name))
    new = [r.fingerprint for r in checkpoint_store.store(storage.layout).records() if r.fingerprint not in seen | known]
    if not new:
        return dg.SkipReason("no new checkpoint in the store")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=fp, partition_key=fp) for fp in new],
        dynamic_partitions_requests=[partitions.checkpoints.build_add_request(new)],
        cursor=json.dumps(sorted(seen | set(new))),
    )


@dg.schedule(
    job=rescore_job,
    # A schedule's cron is part of its definition, so it is read when the definitions load.
    cron_schedule=os.environ.get("GAINRL_RESCORE_CRON", "0 3 * * *"),
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def rescore_latest_schedule(
    context: dg.ScheduleEvaluationContext, storage: StorageResource, checkpoint_store: CheckpointStoreResource
) -> list[dg.RunRequest] | dg.SkipReason:
    """Rescores the most recently registered checkpoint (e.g. after the dataset or code changed)."""
    records = checkpoint_store.store(storage.layout).records()
    if not records:
        return dg.SkipReason("the checkpoint store is empty")
    latest = records[-1].fingerprint
    return [dg.RunRequest(run_key=f"{latest}-{context.scheduled_execution_time:%Y%m%dT%H%M}", partition_key=latest)]
