"""The curriculum assets: dataset -> shards -> scores per checkpoint -> curriculum -> report.

Assets only resolve configuration, call `gainrl_ops`, and describe what they wrote.
"""

from pathlib import Path

import dagster as dg
import polars as pl
import pyarrow.parquet as pq
from dagster import AssetExecutionContext, MaterializeResult
from tqdm.auto import tqdm

from gainrl_ops.catalog import catalog_path, refresh_catalog
from gainrl_ops.checkpoints import CheckpointRecord
from gainrl_ops.curriculum import (
    curriculum_path,
    export_curriculum,
    previous_curriculum,
)
from gainrl_ops.datasets import CANONICAL_SCHEMA, FieldMap
from gainrl_ops.fingerprint import fingerprint_json
from gainrl_ops.models import ModelSpec, load_model, load_tokenizer
from gainrl_ops.prompts import prompt_fingerprint
from gainrl_ops.report import build_report
from gainrl_ops.scorer import (
    SCORE_SCHEMA,
    ScoreContext,
    score_shard,
    write_summary,
)
from gainrl_ops.shards import SHARD_SCHEMA, ShardSet, tokenize_to_shards
from gainrl_ops.sources import DatasetSource, prepare_dataset, resolve_model
from gainrl_ops.storage import replace_directory

from . import partitions
from .metadata import image, preview, table_schema
from .resources import (
    CheckpointStoreResource,
    DatasetResource,
    ModelResource,
    ScoringResource,
    StorageResource,
)

GROUP = "curriculum"


def dataset_source(dataset: DatasetResource) -> DatasetSource:
    return DatasetSource(
        path=dataset.path,
        name=dataset.name,
        fields=FieldMap(problem=dataset.problem_field or None, answer=dataset.answer_field or None),
        on_error=dataset.on_error,
        n_problems=dataset.n_problems,
        seed=dataset.seed,
        max_steps=dataset.max_steps,
        max_digits=dataset.max_digits,
    )


def shard_set(storage: StorageResource, dataset: DatasetResource, model: ModelResource, tokenizer_path: str) -> ShardSet:
    """The shard set that `tokenized_shards` wrote for this dataset, tokenizer and template."""
    key = prompt_fingerprint(load_tokenizer(tokenizer_path), model.prompt)
    return ShardSet.open(storage.layout.shards_root(dataset.name) / key)


@dg.asset(group_name=GROUP, kinds={"parquet"}, code_version="1")
def raw_dataset(storage: StorageResource, dataset: DatasetResource) -> MaterializeResult:
    """The training prompts in the canonical table (id, problem, answer, source, difficulty,
    metadata), with rejected rows and duplicates in a rejects table beside it."""
    layout = storage.layout
    loaded, paths = prepare_dataset(dataset_source(dataset), layout)
    refresh_catalog(layout.root)
    ids = loaded.table.column("id").to_pylist()
    return MaterializeResult(
        metadata={
            "dagster/row_count": loaded.table.num_rows,
            "dagster/column_schema": table_schema(CANONICAL_SCHEMA),
            "rejected_rows": loaded.rejects.num_rows,
            "duplicates": loaded.duplicates,
            "rows_read": loaded.n_read,
            "path": dg.MetadataValue.path(str(paths["prompts"])),
            "rejects_path": dg.MetadataValue.path(str(paths["rejects"])),
            "preview": preview(pl.from_arrow(loaded.table).select("id", "problem", "answer", "difficulty")),
        },
        data_version=dg.DataVersion(fingerprint_json(ids)),
    )


@dg.asset(group_name=GROUP, kinds={"pytorch"}, code_version="1")
def base_checkpoint(
    context: AssetExecutionContext,
    storage: StorageResource,
    model: ModelResource,
    checkpoint_store: CheckpointStoreResource,
) -> MaterializeResult:
    """The base model, registered in the checkpoint store and as a `checkpoints` partition.
    "embedded" builds the tiny local Qwen2 once (cached by its configuration)."""
    layout = storage.layout
    path = resolve_model(model.base_model, layout)
    record = checkpoint_store.store(layout).register(path, name="base", source=model.base_model)
    context.instance.add_dynamic_partitions(partitions.checkpoints.name, [record.fingerprint])
    refresh_catalog(layout.root)
    return MaterializeResult(
        metadata={
            "checkpoint": record.fingerprint,
            "path": dg.MetadataValue.path(record.path),
            "parameters": record.parameters or 0,
            "source": record.source,
        },
        data_version=dg.DataVersion(record.fingerprint),
    )


@dg.asset(group_name=GROUP, kinds={"parquet"}, code_version="1", deps=[raw_dataset, base_checkpoint])
def tokenized_shards(
    storage: StorageResource,
    dataset: DatasetResource,
    model: ModelResource,
    scoring: ScoringResource,
) -> MaterializeResult:
    """Prompts rendered with the base model's chat template and tokenized, with the token
    spans of the system prompt and the question; keyed by tokenizer + template fingerprint."""
    layout = storage.layout
    prompts = pq.read_table(layout.dataset_dir(dataset.name) / "prompts.parquet")
    tokenizer = load_tokenizer(resolve_model(model.base_model, layout))
    shards = tokenize_to_shards(prompts, tokenizer, model.prompt, layout.shards_root(dataset.name), shard_size=scoring.shard_size)
    refresh_catalog(layout.root)
    lengths = pl.concat([pl.read_parquet(s.path, columns=["n_tokens", "truncated"]) for s in shards.shards])
    return MaterializeResult(
        metadata={
            "dagster/row_count": shards.rows,
            "dagster/column_schema": table_schema(SHARD_SCHEMA),
            "shards": len(shards.shards),
            "prompt_fingerprint": shards.prompt_fingerprint,
            "tokenizer_fingerprint": shards.tokenizer_fingerprint,
            "mean_tokens": float(lengths["n_tokens"].mean()),
            "max_tokens": int(lengths["n_tokens"].max()),
            "truncated": int(lengths["truncated"].sum()),
            "path": dg.MetadataValue.path(str(shards.directory)),
        },
        data_version=dg.DataVersion(shards.prompt_fingerprint + fingerprint_json([s.digest for s in shards.shards])),
    )


def existing_curriculum(storage: StorageResource, dataset: DatasetResource, model: ModelResource, record: CheckpointRecord) -> Path:
    """The checkpoint's curriculum snapshot, which training and diagnostics read; it must exist."""
    shards = shard_set(storage, dataset, model, record.path)
    path = curriculum_path(storage.layout.root, dataset.name, shards.prompt_fingerprint, record.fingerprint)
    if not path.exists():
        raise FileNotFoundError(f"{path}: materialize curriculum for checkpoint {record.fingerprint} first")
    return path


def checkpoint_record(context: dg.OpExecutionContext | AssetExecutionContext, storage: StorageResource, checkpoint_store: CheckpointStoreResource) -> CheckpointRecord:
    return checkpoint_store.store(storage.layout).get(context.partition_key)


@dg.op(ins={"shards_ready": dg.In(dg.Nothing)}, out=dg.DynamicOut(int))
def plan_scoring(
    context: dg.OpExecutionContext,
    storage: StorageResource,
    dataset: DatasetResource,
    model: ModelResource,
    checkpoint_store: CheckpointStoreResource,
):
    """One step per shard, so the multiprocess (or Kubernetes/Celery) executor scores them in parallel."""
    record = checkpoint_record(context, storage, checkpoint_store)
    shards = shard_set(storage, dataset, model, record.path)
    for index, shard in enumerate(shards.shards):
        yield dg.DynamicOutput(index, mapping_key=shard.path.stem.replace("-", "_"))


def scoring_target(storage: StorageResource, dataset: DatasetResource, model: ModelResource, record: CheckpointRecord):
    shards = shard_set(storage, dataset, model, record.path)
    final = storage.layout.scores_dir(dataset.name, shards.prompt_fingerprint, record.fingerprint)
    staging = final.with_name(f"_staging-{record.fingerprint}")
    context = ScoreContext(dataset.name, record.fingerprint, record.name, shards.tokenizer_fingerprint, shards.prompt_fingerprint, model.dtype)
    return shards, final, staging, context


@dg.op
def score_shard_step(
    context: dg.OpExecutionContext,
    index: int,
    storage: StorageResource,
    dataset: DatasetResource,
    model: ModelResource,
    scoring: ScoringResource,
    checkpoint_store: CheckpointStoreResource,
) -> int:
    """Score one shard into the staging folder (a part that is already valid is reused)."""
    record = checkpoint_record(context, storage, checkpoint_store)
    shards, final, staging, score_context = scoring_target(storage, dataset, model, record)
    network = load_model(ModelSpec(record.path, dtype=model.dtype, device=model.device))
    shard = shards.shards[index]
    with tqdm(total=shard.rows, desc=f"scoring {shard.path.name}", unit="prompt") as bar:
        written = score_shard(network, shard, staging, score_context, scoring.config, bar, reuse_from=final)
    context.log.info(f"{shard.path.name}: {'scored' if written else 'reused'} {shard.rows} prompts")
    return int(written)


@dg.op(out=dg.Out(dg.Nothing))
def publish_scores(
    context: dg.OpExecutionContext,
    written: list[int],
    storage: StorageResource,
    dataset: DatasetResource,
    model: ModelResource,
    checkpoint_store: CheckpointStoreResource,
) -> None:
    """Swap the complete staging folder in place of the partition's previous scores."""
    record = checkpoint_record(context, storage, checkpoint_store)
    shards, final, staging, score_context = scoring_target(storage, dataset, model, record)
    summary = write_summary(staging, shards, score_context, sum(written))
    replace_directory(staging, final)
    refresh_catalog(storage.layout.root)
    scores = pl.read_parquet(final / "part-*.parquet")
    context.add_output_metadata({
        "dagster/row_count": scores.height,
        "dagster/column_schema": table_schema(SCORE_SCHEMA),
        "checkpoint": record.fingerprint,
        "model": record.name,
        "tokenizer_fingerprint": shards.tokenizer_fingerprint,
        "prompt_fingerprint": shards.prompt_fingerprint,
        "code_version": summary.code_version,
        "parts_scored": summary.parts_written,
        "parts_reused": summary.parts_reused,
        "score_mean": float(scores["angle_score"].mean()),
        "score_std": float(scores["angle_score"].std()),
        "path": dg.MetadataValue.path(str(final)),
        "preview": preview(scores.sort("angle_score", descending=True).select("id", "angle_score", "c_intra", "c_inter", "n_tokens")),
    })


@dg.graph_asset(
    group_name=GROUP,
    partitions_def=partitions.checkpoints,
    kinds={"pytorch", "parquet"},
    code_version="1",
    ins={"tokenized_shards": dg.AssetIn(dagster_type=dg.Nothing)},
)
def angle_scores(tokenized_shards):
    """Angle-concentration scores (c_intra, c_inter, angle_score) of every prompt under one
    checkpoint, with its fingerprint, tokenizer, template and code version on every row.
    Scoring fans out by shard; the partition is replaced atomically when all shards are done."""
    written = plan_scoring(tokenized_shards).map(score_shard_step).collect()
    return publish_scores(written)


@dg.asset(group_name=GROUP, partitions_def=partitions.checkpoints, kinds={"duckdb", "parquet"}, code_version="1", deps=[angle_scores])
def curriculum(
    context: AssetExecutionContext,
    storage: StorageResource,
    dataset: DatasetResource,
    model: ModelResource,
    checkpoint_store: CheckpointStoreResource,
) -> MaterializeResult:
    """Prompts ranked from highest to lowest angle score (the `curriculum` SQL view),
    snapshotted to Parquet for training."""
    record = checkpoint_record(context, storage, checkpoint_store)
    shards = shard_set(storage, dataset, model, record.path)
    frame, path = export_curriculum(storage.layout.root, dataset.name, shards.prompt_fingerprint, record.fingerprint)
    refresh_catalog(storage.layout.root)
    return MaterializeResult(metadata={
        "dagster/row_count": frame.height,
        "checkpoint": record.fingerprint,
        "duckdb": dg.MetadataValue.path(str(catalog_path(storage.layout.root))),
        "path": dg.MetadataValue.path(str(path)),
        "top": preview(frame.select("rank", "id", "angle_score", "problem")),
        "bottom": preview(frame.tail(10).select("rank", "id", "angle_score", "problem")),
    })


@dg.asset(group_name=GROUP, partitions_def=partitions.checkpoints, kinds={"python"}, code_version="1", deps=[curriculum])
def curriculum_report(
    context: AssetExecutionContext,
    storage: StorageResource,
    dataset: DatasetResource,
    model: ModelResource,
    checkpoint_store: CheckpointStoreResource,
) -> MaterializeResult:
    """Score histogram, score against prompt length and difficulty (Spearman), and rank
    agreement with the previous checkpoint (Spearman, top-k overlap), as plots and numbers."""
    layout = storage.layout
    store = checkpoint_store.store(layout)
    record = store.get(context.partition_key)
    shards = shard_set(storage, dataset, model, record.path)
    current = pl.read_parquet(curriculum_path(layout.root, dataset.name, shards.prompt_fingerprint, record.fingerprint))
    previous = previous_curriculum(layout.root, dataset.name, shards.prompt_fingerprint, store.records(), record)
    report = build_report(
        current,
        layout.root / "reports" / dataset.name / shards.prompt_fingerprint / record.fingerprint,
        previous=previous[1] if previous else None,
    )
    return MaterializeResult(metadata={
        **report.as_metadata(),
        "previous_checkpoint": previous[0].fingerprint if previous else "none",
        **{f"plot_{name}": image(path) for name, path in report.plots.items()},
        **{f"plot_{name}_path": dg.MetadataValue.path(str(path)) for name, path in report.plots.items()},
    })
