"""Asset checks: coverage, finiteness, spans, the ranking's shape, and the signal behind it."""

import dagster as dg

from gainrl_ops import validation
from gainrl_ops.curriculum import curriculum_path
from gainrl_ops.sources import resolve_model

from . import partitions
from .assets import (
    angle_scores,
    checkpoint_record,
    curriculum,
    scoring_target,
    shard_set,
    tokenized_shards,
)
from .diagnostics_assets import signal_diagnostics
from .resources import (
    CheckpointStoreResource,
    DatasetResource,
    ModelResource,
    StorageResource,
)


def _result(outcome: validation.CheckOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=outcome.passed, metadata=outcome.details)


@dg.asset_check(asset=tokenized_shards, blocking=True)
def spans_not_empty(storage: StorageResource, dataset: DatasetResource, model: ModelResource) -> dg.AssetCheckResult:
    """Every prompt has a question of two or more tokens and, with a system prompt, a system span."""
    shards = shard_set(storage, dataset, model, resolve_model(model.base_model, storage.layout))
    return _result(validation.spans_not_empty(shards.directory, expect_system=bool(model.system_prompt)))


@dg.asset_check(asset=angle_scores, partitions_def=partitions.checkpoints, blocking=True)
def every_prompt_scored_once(context: dg.AssetCheckExecutionContext, storage: StorageResource, dataset: DatasetResource, model: ModelResource, checkpoint_store: CheckpointStoreResource) -> dg.AssetCheckResult:
    """Every raw prompt id has exactly one score row for this checkpoint."""
    record = checkpoint_record(context, storage, checkpoint_store)
    _, final, _, _ = scoring_target(storage, dataset, model, record)
    return _result(validation.every_prompt_scored_once(storage.layout.dataset_dir(dataset.name) / "prompts.parquet", final))


@dg.asset_check(asset=angle_scores, partitions_def=partitions.checkpoints)
def scores_are_finite(context: dg.AssetCheckExecutionContext, storage: StorageResource, dataset: DatasetResource, model: ModelResource, checkpoint_store: CheckpointStoreResource) -> dg.AssetCheckResult:
    """No NaN or infinite c_intra, c_inter or angle_score."""
    record = checkpoint_record(context, storage, checkpoint_store)
    _, final, _, _ = scoring_target(storage, dataset, model, record)
    return _result(validation.scores_finite(final))


@dg.asset_check(asset=curriculum, partitions_def=partitions.checkpoints)
def rank_is_permutation(context: dg.AssetCheckExecutionContext, storage: StorageResource, dataset: DatasetResource, model: ModelResource, checkpoint_store: CheckpointStoreResource) -> dg.AssetCheckResult:
    """Ranks are 1..n, each once, in decreasing angle score."""
    record = checkpoint_record(context, storage, checkpoint_store)
    shards = shard_set(storage, dataset, model, record.path)
    return _result(validation.rank_is_permutation(curriculum_path(storage.layout.root, dataset.name, shards.prompt_fingerprint, record.fingerprint)))


@dg.asset_check(asset=signal_diagnostics, partitions_def=partitions.checkpoints)
def angle_predicts_gradient(context: dg.AssetCheckExecutionContext, storage: StorageResource, dataset: DatasetResource, checkpoint_store: CheckpointStoreResource) -> dg.AssetCheckResult:
    """Warns when the angle score does not predict gradient norm beyond prompt length for this
    checkpoint, i.e. when the curriculum's premise is not borne out on this model and data."""
    record = checkpoint_record(context, storage, checkpoint_store)
    outcome = validation.angle_predicts_gradient(storage.layout.diagnostics_stem(dataset.name, record.fingerprint).with_suffix(".json"))
    return dg.AssetCheckResult(passed=outcome.passed, severity=dg.AssetCheckSeverity.WARN, metadata=outcome.details)
