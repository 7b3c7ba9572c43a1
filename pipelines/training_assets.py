"""Training and evaluation assets: GRPO runs on the curriculum, and held-out accuracy per checkpoint."""

import dagster as dg
import polars as pl
from dagster import AssetExecutionContext, MaterializeResult

from gainrl_ops.catalog import refresh_catalog
from gainrl_ops.evaluation import evaluate_checkpoint, greedy_accuracy
from gainrl_ops.models import ModelSpec, load_model, load_tokenizer
from gainrl_ops.run_report import plot_runs
from gainrl_ops.sources import held_out_problems, resolve_model
from gainrl_ops.storage import write_parquet_atomic

from . import partitions
from .assets import (
    checkpoint_record,
    curriculum,
    dataset_source,
    existing_curriculum,
    raw_dataset,
)
from .metadata import image, preview
from .resources import (
    CheckpointStoreResource,
    DatasetResource,
    HeldOutResource,
    ModelResource,
    StorageResource,
    TrainingResource,
)

GROUP = "training"


def _held_out(storage: StorageResource, dataset: DatasetResource, held_out: HeldOutResource) -> pl.DataFrame:
    training_ids = pl.read_parquet(storage.layout.dataset_dir(dataset.name) / "prompts.parquet", columns=["id"])["id"]
    generator = dataset_source(dataset).generator
    return held_out_problems(held_out.path, held_out.n_problems, held_out.seed, set(training_ids.to_list()), generator)


@dg.asset(
    group_name=GROUP,
    partitions_def=partitions.training_runs,
    kinds={"pytorch", "parquet"},
    code_version="1",
    deps=[dg.AssetDep(curriculum, partition_mapping=dg.AllPartitionMapping())],
)
def training_run(
    context: AssetExecutionContext,
    storage: StorageResource,
    dataset: DatasetResource,
    model: ModelResource,
    checkpoint_store: CheckpointStoreResource,
    training: TrainingResource,
    held_out: HeldOutResource,
) -> MaterializeResult:
    """A GRPO run (TRL) on the base checkpoint's curriculum with the run's sampler (GAIN-RL
    or uniform): per-epoch table, per-selection table, curves, and checkpoints saved into
    the checkpoint store, where the rescoring sensor picks them up."""
    from gainrl_ops.training import (  # TRL import: seconds, so only when training
        save_to_store,
        train_run,
    )

    run = training.runs()[context.partition_key]
    layout = storage.layout
    store = checkpoint_store.store(layout)
    base = store.register(resolve_model(model.base_model, layout), name="base", source=model.base_model)
    ranked_path = existing_curriculum(storage, dataset, model, base)
    prompts = pl.read_parquet(layout.dataset_dir(dataset.name) / "prompts.parquet", columns=["id", "answer"])
    ranked = pl.read_parquet(ranked_path, columns=["id", "rank", "problem"]).sort("rank").join(prompts, on="id", how="left", maintain_order="left")
    problems = [(q, a) for q, a in _held_out(storage, dataset, held_out).select("problem", "answer").iter_rows()]
    save = save_to_store(store.root, run.name)

    def save_and_register(network, tokenizer, epoch: int):
        path = save(network, tokenizer, epoch)
        store.register(str(path), name=path.name, source=f"training run {run.name}, epoch {epoch + 1}", parent=base.fingerprint)
        return path

    out = layout.root / "runs" / run.name
    result = train_run(
        run, base.path, ranked, model.prompt, out, save_and_register,
        evaluate=lambda network, tokenizer: greedy_accuracy(network, tokenizer, problems, model.prompt),
    )
    curve = plot_runs(result.epochs, out / "curve.png", title=run.name)
    refresh_catalog(layout.root)
    last = result.epochs.row(-1, named=True)
    return MaterializeResult(metadata={
        "dagster/row_count": result.selections.height,
        "sampler": run.sampler,
        "epochs": result.epochs.height,
        "final_rollout_accuracy": last["accuracy"],
        "final_held_out_accuracy": last["held_out_accuracy"],
        "checkpoints": dg.MetadataValue.json(result.checkpoints),
        "epoch_table": preview(result.epochs.drop("checkpoint_path")),
        "curve": image(curve),
        "path": dg.MetadataValue.path(str(out)),
    })


@dg.asset(group_name=GROUP, partitions_def=partitions.checkpoints, kinds={"pytorch", "parquet"}, code_version="1", deps=[raw_dataset])
def evaluation(
    context: AssetExecutionContext,
    storage: StorageResource,
    dataset: DatasetResource,
    model: ModelResource,
    checkpoint_store: CheckpointStoreResource,
    held_out: HeldOutResource,
) -> MaterializeResult:
    """Greedy accuracy of the checkpoint on held-out problems (none of them a training prompt)."""
    record = checkpoint_record(context, storage, checkpoint_store)
    problems = _held_out(storage, dataset, held_out)
    network = load_model(ModelSpec(record.path, dtype=model.dtype, device=model.device))
    frame = evaluate_checkpoint(network, load_tokenizer(record.path), problems, model.prompt, record.fingerprint, held_out.max_new_tokens)
    target = storage.layout.root / "evaluations" / dataset.name / f"{record.fingerprint}.parquet"
    write_parquet_atomic(frame.to_arrow(), target)
    refresh_catalog(storage.layout.root)
    accuracy = float(frame["correct"].mean())
    context.log.info(f"checkpoint {record.name} ({record.fingerprint}): held-out accuracy {accuracy:.3f}")
    return MaterializeResult(metadata={
        "accuracy": accuracy,
        "dagster/row_count": frame.height,
        "checkpoint": record.fingerprint,
        "checkpoint_name": record.name,
        "path": dg.MetadataValue.path(str(target)),
        "preview": preview(frame.select("id", "answer", "predicted", "correct", "completion")),
    })
