"""Published pass rates: one folder per checkpoint key (`ScoresKey`), swapped in whole, and read
back by prompt id. Torch-free: samplers, reports and the SQL catalog read them without a model.

The folder holds `pass_rates.parquet` (the `columns.RANKED_PASS_RATES` schema: each prompt's
pass rate, learnability, generation cost and provenance, with both ranks stored), `summary.json`
(the configuration and totals) and `pass_rates.png` (the histogram). It is written into a
temporary sibling and renamed over the previous one, so a reader sees the old estimate or the
new one, never a mix.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.parquet as pq

from gainrl_ops.core import columns
from gainrl_ops.core import layout as tree
from gainrl_ops.core.columns import arrow_schema
from gainrl_ops.core.keys import ScoresKey
from gainrl_ops.core.layout import Layout
from gainrl_ops.core.storage import ROW_GROUP_ROWS, atomic_directory, sweep_temporary
from gainrl_ops.data.versions import require_served
from gainrl_ops.difficulty.config import PassRateConfig
from gainrl_ops.scoring.publish import ScoreContext

if TYPE_CHECKING:  # loading the Dagster definitions should not pay for polars
    import polars as pl

PASS_RATE_SCHEMA = arrow_schema(columns.RANKED_PASS_RATES)
SUMMARY = tree.PASS_RATES_SUMMARY.name()
PLOT = tree.PASS_RATES_PLOT.name()
DATA = tree.PASS_RATES.name()


@dataclass(frozen=True)
class PassRateSummary:
    """A published estimate: where, how many prompts, and what it found and cost."""

    path: Path
    rows: int
    mean_pass_rate: float
    mean_learnability: float
    never_solved: int
    always_solved: int
    completion_tokens: int
    generation_seconds: float
    code_version: str

    @property
    def plot(self) -> Path:
        return self.path.with_name(PLOT)


def with_ranks(rows: pl.DataFrame) -> pl.DataFrame:
    """`rows` (one per prompt: id, pass_rate, learnability, ...) with pass_rate_rank (1 = highest
    pass rate, the easiest), learnability_rank (1 = highest p(1 - p)), both with ties by id, and
    n_prompts."""
    import polars as pl

    def rank(column: str) -> pl.Expr:
        return pl.struct(pl.col(column).neg(), pl.col("id")).rank("ordinal").cast(pl.Int64)

    return rows.with_columns(pass_rate_rank=rank("pass_rate"), learnability_rank=rank("learnability"), n_prompts=pl.lit(rows.height, pl.Int64))


def publish_pass_rates(
    layout: Layout, key: ScoresKey, rows: pl.DataFrame, context: ScoreContext, config: PassRateConfig, code_version: str
) -> PassRateSummary:
    """Publish `rows` (from `estimate_pass_rates`; each needs n_tokens and truncated too) as the
    pass rates of `key`, stamped with `context`, `config` and `code_version`, replacing any
    earlier estimate of the same key."""
    import polars as pl

    from gainrl_ops.difficulty.plots import plot_pass_rates  # matplotlib: only when publishing

    if (context.dataset, context.dataset_version, context.prompt_fingerprint, context.checkpoint) != (
        key.dataset, key.version, key.prompt_fingerprint, key.checkpoint
    ):
        raise ValueError(f"pass rates of {key} stamped with another context: {context}")
    stamped = with_ranks(rows).with_columns(
        temperature=pl.lit(config.temperature, pl.Float64),
        max_new_tokens=pl.lit(config.max_new_tokens, pl.Int32),
        seed=pl.lit(config.seed, pl.Int64),
        sample=pl.lit(config.sample, pl.Int64),
        code_version=pl.lit(code_version),
        **{name: pl.lit(value) for name, value in asdict(context).items()},
    )
    table = stamped.select(PASS_RATE_SCHEMA.names).sort("pass_rate_rank").to_arrow().cast(PASS_RATE_SCHEMA)
    target = layout.pass_rates(key)
    summary = PassRateSummary(
        target, table.num_rows, float(stamped["pass_rate"].mean() or 0.0), float(stamped["learnability"].mean() or 0.0),
        int((stamped["pass_rate"] == 0).sum()), int((stamped["pass_rate"] == 1).sum()), int(stamped["completion_tokens"].sum()),
        float(stamped["generation_seconds"].sum()), code_version,
    )
    # What a killed publish left beside the folder (its temporary sibling) goes first.
    sweep_temporary(target.parent.parent, time.time())
    with atomic_directory(target.parent) as folder:
        pq.write_table(table, folder / DATA, compression="zstd", row_group_size=ROW_GROUP_ROWS)
        record = {**asdict(summary), "path": str(target), "config": asdict(config), "context": asdict(context)}
        (folder / SUMMARY).write_text(json.dumps(record, indent=2))
        plot_pass_rates(stamped, config.k, folder / PLOT)
    return summary


def find_pass_rates(layout: Layout, dataset: str, checkpoint: str, version: str | None = None) -> Path:
    """The published pass rates of `checkpoint` on `version` of `dataset` (default: the version
    the name serves). Of several prompt fingerprints, the current shard set's is taken."""
    version = version or require_served(layout, dataset)
    found = sorted(Path(p) for p in _glob(layout, dataset=dataset, version=version, checkpoint=checkpoint))
    if len(found) > 1:
        current = json.loads(layout.current_shards(dataset, version).read_text())["prompt_fingerprint"]
        found = [p for p in found if f"prompts={current}/" in p.as_posix()]
    if not found:
        raise FileNotFoundError(
            f"{layout.root}: no pass rates of checkpoint {checkpoint} on dataset {dataset!r} version {version}; "
            "materialize pass_rates for that checkpoint partition (job estimate_difficulty)"
        )
    return found[0]


def read_pass_rates(layout: Layout, dataset: str, checkpoint: str, version: str | None = None) -> dict[str, float]:
    """Prompt id -> pass rate of `checkpoint` on the dataset (see `find_pass_rates`): what a
    reward-based sampler starts from (e.g. learnability, p(1 - p), from the base checkpoint)."""
    table = pq.read_table(find_pass_rates(layout, dataset, checkpoint, version), columns=["id", "pass_rate"])
    return dict(zip(table["id"].to_pylist(), table["pass_rate"].to_pylist()))


def _glob(layout: Layout, **values: str) -> list[str]:
    import glob

    return glob.glob(layout.glob(tree.PASS_RATES, **values))


def with_pass_rates(ranked: pl.DataFrame, layout: Layout, dataset: str, checkpoint: str, version: str | None = None) -> pl.DataFrame:
    """`ranked` (one row per prompt, column id) with the column the learnability sampler starts
    from: each prompt's published pass rate under `checkpoint`, null where the estimate sampled
    other prompts (the sampler's prior then applies)."""
    import polars as pl

    from gainrl_ops.training.config import PASS_RATE

    rates = read_pass_rates(layout, dataset, checkpoint, version)
    return ranked.with_columns(pl.col("id").replace_strict(rates, default=None, return_dtype=pl.Float64).alias(PASS_RATE))
