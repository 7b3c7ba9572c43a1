"""Training and evaluation assets: GRPO runs on the curriculum, and held-out accuracy per checkpoint."""

import dagster as dg
from dagster import AssetExecutionContext, MaterializeResult

from gainrl_ops.core.collector import collector_paused
from gainrl_ops.core.storage import write_parquet_atomic
from gainrl_ops.curriculum.ranking import existing_ranking, ordered_prompts, ranked_prompts
from gainrl_ops.data.sources import held_out_for
from gainrl_ops.difficulty.store import with_pass_rates

from ... import partitions
from ...executors import MODEL_STEP_TAGS
from ...hooks import refresh_catalog_hook
from ...metadata import image, preview
from ...resources import HeldOutResource, TargetsResource, TrainingResource

GROUP = "training"


@dg.asset(
    group_name=GROUP,
    partitions_def=partitions.training_runs,
    kinds={"pytorch", "parquet"},
    code_version="3",
    deps=[dg.AssetDep("curriculum", partition_mapping=dg.AllPartitionMapping())],
    hooks={refresh_catalog_hook},
    op_tags=MODEL_STEP_TAGS,
)
def training_run(context: AssetExecutionContext, targets: TargetsResource, training: TrainingResource, held_out: HeldOutResource) -> MaterializeResult:
    """A GRPO run (TRL) with the run's sampler: GAIN-RL or uniform on the base checkpoint's
    curriculum, GAIN-RL's window over a control order from the catalog (length, difficulty),
    or a reward-based sampler (learnability, pool). Per-epoch, per-selection and per-rollout-
    group tables, curves, and checkpoints saved into the checkpoint store, where the
    rescoring sensor picks them up. A killed run resumes after its last complete epoch when
    materialized again. With `num_processes` in the run config, the run is data-parallel
    under `accelerate launch`."""
    from gainrl_ops.training.launch import train_on_processes

    run = training.run(context.partition_key)
    target = targets.target(targets.base())
    if run.ordering == "angle":
        ranked = ranked_prompts(target.layout, target.dataset, target.version, existing_ranking(target.layout, target.key))
    else:
        ranked = ordered_prompts(target.layout, target.dataset, target.version, target.shards.prompt_fingerprint, run.ordering)
    if run.sampler == "learnability":
        ranked = with_pass_rates(ranked, target.layout, target.dataset, target.key.checkpoint, target.version)
    problems = list(held_out_for(target.source, target.version, held_out.config, target.layout).select("problem", "answer").iter_rows())
    result, curve = train_on_processes(run, targets.store, target.record, ranked, target.prompt, target.layout, problems)
    last = result.epochs.row(-1, named=True)
    return MaterializeResult(metadata={
        "dagster/row_count": result.selections.height,
        "sampler": run.sampler,
        "feedback": run.feedback,
        "epochs": result.epochs.height,
        "final_rollout_accuracy": last["accuracy"],
        "final_held_out_accuracy": last["held_out_accuracy"],
        "groups_all_equal": float(result.rollouts["all_equal"].mean()),
        "checkpoints": dg.MetadataValue.json(result.checkpoints),
        "epoch_table": preview(result.epochs.drop("checkpoint_path")),
        "curve": image(curve),
        "path": dg.MetadataValue.path(str(result.directory)),
    })


@dg.asset(
    group_name=GROUP, partitions_def=partitions.checkpoints, kinds={"pytorch", "parquet"}, code_version="1",
    deps=["raw_dataset"], hooks={refresh_catalog_hook}, op_tags=MODEL_STEP_TAGS,
)
def evaluation(context: AssetExecutionContext, targets: TargetsResource, held_out: HeldOutResource) -> MaterializeResult:
    """Greedy accuracy of the checkpoint on held-out problems (none of them a training prompt)."""
    target = targets.resolve(context)
    problems = held_out_for(target.source, target.version, held_out.config, target.layout)
    with collector_paused() as started:  # torch's import and the model load: core/collector.py
        from gainrl_ops.training.evaluation import evaluate_checkpoint

        model, tokenizer = target.load_model(), target.load_tokenizer()
        started()
        frame = evaluate_checkpoint(model, tokenizer, problems, target.prompt, target.checkpoint, held_out.max_new_tokens)
    write_parquet_atomic(frame.to_arrow(), target.evaluation)
    accuracy = float(frame["correct"].mean())
    context.log.info(f"checkpoint {target.record.name} ({target.checkpoint}): held-out accuracy {accuracy:.3f}")
    return MaterializeResult(metadata={
        "accuracy": accuracy,
        "dagster/row_count": frame.height,
        "checkpoint": target.checkpoint,
        "checkpoint_name": target.record.name,
        "path": dg.MetadataValue.path(str(target.evaluation)),
        "preview": preview(frame.select("id", "answer", "predicted", "correct", "completion")),
    })
