"""The curriculum assets: dataset -> shards -> scores per checkpoint -> curriculum -> report.

Each asset resolves its target, makes one library call, and describes what it wrote.
"""

import dagster as dg
import pyarrow.parquet as pq
from dagster import AssetExecutionContext, MaterializeResult

from gainrl_ops.core.collector import collector_paused
from gainrl_ops.core.fingerprint import fingerprint_json
from gainrl_ops.core.progress import bar as progress_bar
from gainrl_ops.curriculum.exports import FILES, FORMATS, export_curriculum, read_curriculum
from gainrl_ops.curriculum.ranking import (
    existing_ranking,
    export_ranking,
    previous_ranking,
    ranking_preview,
)
from gainrl_ops.curriculum.rankings import ranking_agreement
from gainrl_ops.data.datasets import CANONICAL_SCHEMA
from gainrl_ops.data.shards import SHARD_SCHEMA, tokenize_to_shards
from gainrl_ops.data.sources import prepare_dataset
from gainrl_ops.data.versions import served_version, settle
from gainrl_ops.scoring.plan import ScoringPlan

from ... import partitions
from ...executors import MODEL_STEP_TAGS
from ...hooks import refresh_catalog_hook
from ...metadata import image, preview, table_schema
from ...resources import (
    DatasetResource,
    ModelResource,
    ScoringResource,
    StorageResource,
    TargetsResource,
)

GROUP = "curriculum"


@dg.asset(group_name=GROUP, kinds={"parquet"}, code_version="1", hooks={refresh_catalog_hook})
def raw_dataset(storage: StorageResource, dataset: DatasetResource) -> MaterializeResult:
    """The training prompts in the canonical table (id, problem, answer, source, difficulty,
    metadata), with rejected rows and duplicates in a rejects table beside it."""
    import polars as pl

    layout = storage.layout
    loaded, label = prepare_dataset(dataset.source, layout)
    return MaterializeResult(
        metadata={
            "dagster/row_count": loaded.rows,
            "dagster/column_schema": table_schema(CANONICAL_SCHEMA),
            "dataset_version": label.version,
            "served_version": served_version(layout, label.dataset) or "none",
            "rejected_rows": loaded.rejects.num_rows,
            "duplicates": loaded.duplicates,
            "rows_read": loaded.n_read,
            "file": label.file,
            "path": dg.MetadataValue.path(str(layout.prompts(label.dataset, label.version))),
            "rejects_path": dg.MetadataValue.path(str(layout.rejects(label.dataset, label.version))),
            "preview": preview(pl.read_parquet(loaded.prompts, columns=["id", "problem", "answer", "difficulty"], n_rows=10)),
        },
        data_version=dg.DataVersion(label.version),
    )


@dg.asset(group_name=GROUP, kinds={"pytorch"}, code_version="1", hooks={refresh_catalog_hook})
def base_checkpoint(context: AssetExecutionContext, targets: TargetsResource) -> MaterializeResult:
    """The base model, registered in the checkpoint store and as a `checkpoints` partition.
    "embedded" builds the tiny local Qwen2 once (cached by its configuration)."""
    record = targets.base()
    context.instance.add_dynamic_partitions(partitions.checkpoints.name, [record.fingerprint])
    return MaterializeResult(
        metadata={
            "checkpoint": record.fingerprint,
            "path": dg.MetadataValue.path(record.path),
            "parameters": record.parameters or 0,
            "source": record.source,
        },
        data_version=dg.DataVersion(record.fingerprint),
    )


@dg.asset(group_name=GROUP, kinds={"parquet"}, code_version="1", deps=[raw_dataset, base_checkpoint], hooks={refresh_catalog_hook})
def tokenized_shards(targets: TargetsResource, scoring: ScoringResource) -> MaterializeResult:
    """Prompts rendered with the base model's chat template and tokenized, with the token
    spans of the system prompt and the question; keyed by tokenizer + template fingerprint.
    Recorded as the dataset's current shard set, which every checkpoint partition scores."""
    import polars as pl

    from gainrl_ops.scoring.models import load_tokenizer

    layout, name, version = targets.layout, targets.dataset.source.name, targets.loaded_version()
    tokenizer = load_tokenizer(targets.base_model_path())
    prompts = pq.read_table(layout.prompts(name, version))
    prompt = targets.model.prompt
    shards = tokenize_to_shards(prompts, tokenizer, prompt, layout, name, version, shard_size=scoring.shard_size)
    lengths = pl.concat([pl.read_parquet(s.path, columns=["n_tokens", "truncated"]) for s in shards.shards])
    return MaterializeResult(
        metadata={
            "dagster/row_count": shards.rows,
            "dagster/column_schema": table_schema(SHARD_SCHEMA),
            "shards": len(shards.shards),
            "prompt_fingerprint": shards.prompt_fingerprint,
            "tokenizer_fingerprint": shards.tokenizer_fingerprint,
            "few_shot_turns": len(prompt.few_shot),
            "mean_tokens": float(lengths["n_tokens"].mean()),
            "max_tokens": int(lengths["n_tokens"].max()),
            "truncated": int(lengths["truncated"].sum()),
            "path": dg.MetadataValue.path(str(shards.directory)),
        },
        data_version=dg.DataVersion(shards.prompt_fingerprint + fingerprint_json([s.digest for s in shards.shards])),
    )


@dg.op(ins={"shards_ready": dg.In(dg.Nothing)}, out={"plan": dg.Out(ScoringPlan), "shards": dg.DynamicOut(int)})
def plan_scoring(context: dg.OpExecutionContext, targets: TargetsResource):
    """Resolve the run once (dataset version, prompt fingerprint, shard files and digests) and
    fan out one step per shard, so the multiprocess (or Kubernetes/Celery) executor scores them
    in parallel. Every step works from this plan and never reads `current.json` again."""
    plan = targets.resolve(context, loaded=True).plan()
    plan.sweep()
    yield dg.Output(plan, "plan", metadata={"dataset_version": plan.key.version, "prompt_fingerprint": plan.key.prompt_fingerprint})
    for shard in plan.shards.shards:
        yield dg.DynamicOutput(shard.index, output_name="shards", mapping_key=shard.path.stem.replace("-", "_"))


@dg.op(tags=MODEL_STEP_TAGS)
def score_shard_step(context: dg.OpExecutionContext, index: int, plan: ScoringPlan, scoring: ScoringResource, model: ModelResource) -> int:
    """Score one planned shard into the staging folder (a part that is already valid is reused)."""
    shard = plan.shard(index)
    with collector_paused() as started:  # torch's import and the model load, as `gainrl score` does: core/collector.py
        from gainrl_ops.scoring.models import ModelSpec, load_model
        from gainrl_ops.scoring.scorer import score_part

        loaded = load_model(ModelSpec(plan.checkpoint_path, dtype=plan.dtype, device=model.device))
        started()
        with progress_bar(shard.rows, f"scoring {shard.path.name}", unit="prompt") as bar:
            written = score_part(loaded, plan, index, scoring.config, bar)
    context.log.info(f"{shard.path.name}: {'scored' if written else 'reused'} {shard.rows} prompts")
    return int(written)


@dg.op(out=dg.Out(dg.Nothing))
def publish_scores(context: dg.OpExecutionContext, written: list[int], plan: ScoringPlan) -> None:
    """Swap the complete staging folder in place of the partition's previous scores."""
    import polars as pl

    summary = plan.publish(sum(written))
    served = settle(plan.layout, plan.key.dataset)
    scores = pl.read_parquet(plan.ranked_scores)
    context.add_output_metadata({
        "dagster/row_count": scores.height,
        "dagster/column_schema": table_schema(pq.read_schema(plan.ranked_scores)),
        "checkpoint": plan.key.checkpoint,
        "model": plan.model,
        "dataset_version": plan.key.version,
        "served_version": served or "none",
        "tokenizer_fingerprint": plan.shards.tokenizer_fingerprint,
        "prompt_fingerprint": plan.key.prompt_fingerprint,
        "code_version": summary.code_version,
        "parts_scored": summary.parts_written,
        "parts_reused": summary.parts_reused,
        "scoring_mode": summary.scoring_mode,
        "score_mean": float(scores["angle_score"].mean()),
        "score_std": float(scores["angle_score"].std()),
        "path": dg.MetadataValue.path(str(plan.final)),
        "preview": preview(scores.select("rank", "id", "angle_score", "c_intra", "c_inter", "n_tokens")),
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
    plan, shards = plan_scoring(tokenized_shards)
    written = shards.map(lambda index: score_shard_step(index, plan)).collect()
    return publish_scores.with_hooks({refresh_catalog_hook})(written, plan)


@dg.asset(
    group_name=GROUP, partitions_def=partitions.checkpoints, kinds={"duckdb", "parquet"}, code_version="1",
    deps=[angle_scores], hooks={refresh_catalog_hook},
)
def curriculum(context: AssetExecutionContext, targets: TargetsResource) -> MaterializeResult:
    """Prompts ranked from highest to lowest angle score (the `curriculum` SQL view),
    snapshotted to Parquet for training."""
    target = targets.resolve(context)
    path = export_ranking(target.layout, target.key)
    rows, top, bottom = ranking_preview(path)
    return MaterializeResult(metadata={
        "dagster/row_count": rows,
        "dagster/column_schema": table_schema(pq.read_schema(path)),
        "checkpoint": target.checkpoint,
        "duckdb": dg.MetadataValue.path(str(target.layout.catalog)),
        "path": dg.MetadataValue.path(str(path)),
        "top": preview(top.select("rank", "id", "angle_score", "problem")),
        "bottom": preview(bottom.select("rank", "id", "angle_score", "problem")),
    })


@dg.asset(group_name=GROUP, partitions_def=partitions.checkpoints, kinds={"python"}, code_version="1", deps=[curriculum, "pass_rates"])
def curriculum_report(context: AssetExecutionContext, targets: TargetsResource) -> MaterializeResult:
    """Score histogram, score against prompt length and difficulty (Spearman), rank agreement
    with the previous checkpoint (Spearman, top-k overlap), and, once the checkpoint has
    pass_rates, agreement with the pass-rate and learnability rankings (Spearman, partial
    Spearman given length, top-k overlap), as plots and numbers."""
    import polars as pl

    from gainrl_ops.curriculum.report import (
        build_report,  # matplotlib: only when plotting
    )

    target = targets.resolve(context)
    previous = previous_ranking(target.layout, target.key, targets.store.records(), target.record)
    rated = target.layout.pass_rates(target.key)
    report = build_report(
        pl.read_parquet(existing_ranking(target.layout, target.key)), target.report_dir, previous=previous[1] if previous else None,
        pass_rates=pl.read_parquet(rated) if rated.exists() else None,
    )
    agreement = ranking_agreement(target.layout, target.dataset)
    return MaterializeResult(metadata={
        **report.as_metadata(),
        "pass_rate_agreement": preview(report.agreement_table(), rows=len(report.agreement)) if report.agreement else report.agreement_note,
        "ranking_agreement": preview(agreement, rows=agreement.height),
        "previous_checkpoint": previous[0].fingerprint if previous else "none",
        **{f"plot_{name}": image(path) for name, path in report.plots.items()},
        **{f"plot_{name}_path": dg.MetadataValue.path(str(path)) for name, path in report.plots.items()},
    })


@dg.asset(
    group_name=GROUP, partitions_def=partitions.checkpoints, kinds={"parquet", "pytorch"}, code_version="1", deps=[curriculum],
)
def curriculum_export(context: AssetExecutionContext, targets: TargetsResource) -> MaterializeResult:
    """The checkpoint's ranking in every format other trainers read: verl Parquet, a Hugging
    Face datasets folder, JSON Lines (OpenRLHF, prime-rl) and the reference's .pt row index,
    each in rank order with the checkpoint fingerprint and scoring code version."""
    import polars as pl

    target = targets.resolve(context)
    folder = target.layout.export_dir(target.dataset, target.version, target.checkpoint)
    ranked = read_curriculum(target.layout, existing_ranking(target.layout, target.key))
    written = {fmt: export_curriculum(ranked, fmt, folder / FILES[fmt]) for fmt in FORMATS}
    info = written["verl"]
    return MaterializeResult(metadata={
        "dagster/row_count": info.rows,
        "checkpoint": info.checkpoint,
        "code_version": info.code_version,
        **{f"path_{fmt}": dg.MetadataValue.path(str(folder / FILES[fmt])) for fmt in FORMATS},
        "preview_verl": preview(pl.read_parquet(folder / FILES["verl"], n_rows=5).select("data_source", "extra_info", "reward_model")),
    })
