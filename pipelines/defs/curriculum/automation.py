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
    selection=dg.AssetSelection.assets("angle_scores", "curriculum", "curriculum_report", "curriculum_export", "evaluation"),
    description="Score every prompt with one checkpoint, rank them, report, export the ranking, and evaluate the checkpoint on held-out problems.",
)


@dg.sensor(job=rescore_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def new_checkpoint_sensor(
    context: dg.SensorEvaluationContext, storage: StorageResource, checkpoint_store: CheckpointStoreResource
) -> dg.SensorResult:
    """Registers each new checkpoint of the store as a partition and requests its scoring.

    A folder copied in by hand is taken once its weights are complete and it looked the same on
    two ticks `settle_seconds` apart; the cursor keeps what each tick saw. A broken folder is
    logged and retried on later ticks without holding up the others. The run key is the
    checkpoint fingerprint and the cursor remembers the fingerprints seen, so a checkpoint is
    scored once however often it is listed.
    """
    state = json.loads(context.cursor or "{}")
    seen = set(state.get("seen", []))
    store = checkpoint_store.store(storage.layout)
    found = store.discover(state.get("arrivals"))
    for problem in found.problems:
        context.log.warning(f"not a checkpoint yet: {problem}")
    known = set(context.instance.get_dynamic_partitions(partitions.checkpoints.name))
    records = {r.fingerprint: r for r in store.records()}
    new = [fp for fp in records if fp not in seen | known]
    cursor = json.dumps({"seen": sorted(seen | set(new)), "arrivals": found.arrivals})
    if not new:
        waiting = f"; watching {len(found.arrivals)} copied folder(s)" if found.arrivals else ""
        return dg.SensorResult(skip_reason=f"no new checkpoint in the store{waiting}", cursor=cursor)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=fp, partition_key=fp, tags=partitions.checkpoint_tags(records[fp].name)) for fp in new],
        dynamic_partitions_requests=[partitions.checkpoints.build_add_request(new)],
        cursor=cursor,
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
    latest = records[-1]
    return [dg.RunRequest(
        run_key=f"{latest.fingerprint}-{context.scheduled_execution_time:%Y%m%dT%H%M}",
        partition_key=latest.fingerprint,
        tags=partitions.checkpoint_tags(latest.name),
    )]
