"""Signal diagnostics: does the angle score predict gradient strength for this checkpoint?"""

import dagster as dg
import pyarrow.parquet as pq
from dagster import AssetExecutionContext, MaterializeResult

from gainrl_ops.core.collector import collector_paused
from gainrl_ops.core.stats import finite_or_none
from gainrl_ops.curriculum.ranking import existing_ranking, ranked_prompts

from ... import partitions
from ...executors import MODEL_STEP_TAGS
from ...hooks import refresh_catalog_hook
from ...metadata import image, preview, table_schema
from ...resources import DiagnosticsResource, TargetsResource


@dg.asset(
    group_name="diagnostics", partitions_def=partitions.checkpoints, kinds={"pytorch", "parquet"}, code_version="1",
    deps=["curriculum"], hooks={refresh_catalog_hook}, op_tags=MODEL_STEP_TAGS,
)
def signal_diagnostics(context: AssetExecutionContext, targets: TargetsResource, diagnostics: DiagnosticsResource) -> MaterializeResult:
    """For a seeded sample of prompts: the gradient norm under the GRPO loss (the NLL of the
    reference solution when a group's rewards are all equal), its Spearman correlation with
    the angle score, its components and prompt length, and the partial correlation with the
    angle score controlling for length, each with a bootstrap interval, and the verdict."""
    target = targets.resolve(context)
    scored = ranked_prompts(target.layout, target.dataset, target.version, existing_ranking(target.layout, target.key), columns=("answer", "metadata"))
    with collector_paused() as started:  # torch's import and the model load: core/collector.py
        from gainrl_ops.diagnostics.signal import (  # torch: only when diagnosing
            GRPO,
            LENGTH,
            REFERENCE_NLL,
            diagnose,
            write_report,
        )

        model, tokenizer = target.load_model(), target.load_tokenizer()
        started()
        report = diagnose(model, tokenizer, scored, target.prompt, diagnostics.config)
    paths = write_report(report, target.diagnostics_stem)
    context.log.info(f"checkpoint {target.record.name} ({target.checkpoint}): {report.verdict}")
    partial = report.association("angle_score", LENGTH)
    sources = report.rows["gradient_source"]
    return MaterializeResult(metadata={
        "verdict": report.verdict,
        "dagster/row_count": report.rows.height,
        "dagster/column_schema": table_schema(pq.read_schema(paths["rows"])),
        "checkpoint": target.checkpoint,
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
