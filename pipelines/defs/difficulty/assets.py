"""Pass rates per checkpoint: the reward-based difficulty signal, keyed like the angle scores."""

from dataclasses import fields

import dagster as dg
import pyarrow.parquet as pq
from dagster import AssetExecutionContext, MaterializeResult

from gainrl_ops.difficulty.config import PassRateConfig

from ... import partitions
from ...executors import MODEL_STEP_TAGS
from ...hooks import refresh_catalog_hook
from ...metadata import image, preview, table_schema
from ...resources import TargetsResource


class PassRatesConfig(dg.Config):
    """Run config of `pass_rates`, field for field `PassRateConfig` (see its docstring).

    k: completions per prompt; temperature: sampling temperature; sample: prompts drawn with
    `seed` (empty: every prompt); seed: the draw and every completion; max_new_tokens:
    completion length; batch_size: completions per generate call.
    """

    k: int = PassRateConfig.k
    temperature: float = PassRateConfig.temperature
    sample: int | None = PassRateConfig.sample
    seed: int = PassRateConfig.seed
    max_new_tokens: int = PassRateConfig.max_new_tokens
    batch_size: int = PassRateConfig.batch_size

    @property
    def library(self) -> PassRateConfig:
        return PassRateConfig(**{f.name: getattr(self, f.name) for f in fields(PassRateConfig)})


@dg.asset(
    group_name="difficulty", partitions_def=partitions.checkpoints, kinds={"pytorch", "parquet"}, code_version="1",
    deps=["tokenized_shards"], hooks={refresh_catalog_hook}, op_tags=MODEL_STEP_TAGS,
)
def pass_rates(context: AssetExecutionContext, config: PassRatesConfig, targets: TargetsResource) -> MaterializeResult:
    """Per prompt (all, or a seeded sample): the fraction of k sampled completions that the
    training reward counts correct, its learnability p(1 - p) and what generating them cost,
    with the checkpoint, dataset version, prompt fingerprint and dtype on every row; the
    partition is replaced whole. In SQL: the `pass_rates` view, and sources pass_rate and
    learnability of `rankings`."""
    import polars as pl

    from gainrl_ops.difficulty.pass_rates import rate_checkpoint  # torch: only when sampling

    target = targets.resolve(context, loaded=True)
    run = config.library
    summary = rate_checkpoint(target, run)
    rows = pl.read_parquet(summary.path)
    context.log.info(f"checkpoint {target.record.name} ({target.checkpoint}): mean pass rate {summary.mean_pass_rate:.3f} over {summary.rows} prompts")
    return MaterializeResult(metadata={
        "dagster/row_count": summary.rows,
        "dagster/column_schema": table_schema(pq.read_schema(summary.path)),
        "checkpoint": target.checkpoint,
        "dataset_version": target.version,
        "k": run.k,
        "sample": run.sample if run.sample is not None else "all",
        "seed": run.seed,
        "mean_pass_rate": summary.mean_pass_rate,
        "mean_learnability": summary.mean_learnability,
        "never_solved": summary.never_solved,
        "always_solved": summary.always_solved,
        "completion_tokens": summary.completion_tokens,
        "generation_seconds": summary.generation_seconds,
        "code_version": summary.code_version,
        "path": dg.MetadataValue.path(str(summary.path)),
        "plot": image(summary.plot),
        "preview": preview(rows.select("learnability_rank", "id", "pass_rate", "learnability", "n_correct", "completion_tokens").sort("learnability_rank")),
    })
