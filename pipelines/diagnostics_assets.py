"""Signal diagnostics: does the angle score predict gradient strength for this checkpoint?"""

import dagster as dg
import polars as pl
import pyarrow.parquet as pq
from dagster import AssetExecutionContext, MaterializeResult

from gainrl_ops.catalog import refresh_catalog
from gainrl_ops.diagnostics import GRPO, LENGTH, REFERENCE_NLL, diagnose, write_report
from gainrl_ops.models import ModelSpec, load_model, load_tokenizer
from gainrl_ops.stats import finite_or_none

from . import partitions
from .assets import checkpoint_record, curriculum, existing_curriculum
from .metadata import image, preview, table_schema
from .resources import (
    CheckpointStoreResource,
    DatasetResource,
    DiagnosticsResource,
    ModelResource,
    StorageResource,
)


@dg.asset(group_name="diagnostics", partitions_def=partitions.checkpoints, kinds={"pytorch", "parquet"}, code_version="1", deps=[curriculum])
def signal_diagnostics(
    context: AssetExecutionContext,
    storage: StorageResource,
    dataset: DatasetResource,
    model: ModelResource,
    checkpoint_store: CheckpointStoreResource,
    diagnostics: DiagnosticsResource,
) -> MaterializeResult:
    """For a seeded sample of prompts: the gradient norm under the GRPO loss (the NLL of the
    reference solution when a group's rewards are all equal), its Spearman correlation with
    the angle score, its components and prompt length, and the partial correlation with the
    angle score controlling for length, each with a bootstrap interval, and the verdict."""
    layout = storage.layout
    record = checkpoint_record(context, storage, checkpoint_store)
    ranked_path = existing_curriculum(storage, dataset, model, record)
    prompts = pl.read_parquet(layout.dataset_dir(dataset.name) / "prompts.parquet", columns=["id", "answer", "metadata"])
    scored = pl.read_parquet(ranked_path).join(prompts, on="id", how="left")
    network = load_model(ModelSpec(record.path, dtype=model.dtype, device=model.device))
    report = diagnose(network, load_tokenizer(record.path), scored, model.prompt, diagnostics.config)
    paths = write_report(report, layout.diagnostics_stem(dataset.name, record.fingerprint))
    refresh_catalog(layout.root)
    context.log.info(f"checkpoint {record.name} ({record.fingerprint}): {report.verdict}")
    partial = report.association("angle_score", LENGTH)
    sources = report.rows["gradient_source"]
    return MaterializeResult(metadata={
        "verdict": report.verdict,
        "dagster/row_count": report.rows.height,
        "dagster/column_schema": table_schema(pq.read_schema(paths["rows"])),
        "checkpoint": record.fingerprint,
        "grpo_rows": int((sources == GRPO).sum()),
        "reference_nll_rows": int((sources == REFERENCE_NLL).sum()),
        "partial_rho_angle_given_length": finite_or_none(partial.estimate),
        "partial_rho_low": finite_or_none(partial.low),
        "partial_rho_high": finite_or_none(partial.high),
        **{f"rho_{name}": finite_or_none(report.association(name).estimate) for name in ("angle_score", "c_intra", "c_inter", LENGTH)},
        "associations": preview(report.table(), rows=len(report.associations)),
        "plot": image(paths["plot"]),
        "path": dg.MetadataValue.path(str(paths["rows"])),
        "summary_path": dg.MetadataValue.path(str(paths["summary"])),
        "preview": preview(report.rows.select("id", "rank", "angle_score", LENGTH, "grad_norm", "gradient_source", "reward_mean")),
    })
