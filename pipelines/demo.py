"""`make demo`: the whole loop on the embedded default, through Dagster.

dataset -> shards -> scores -> curriculum -> report -> evaluation -> pass rates (a seeded sample of
256 prompts, 8 samples each, and the report's agreement with them) -> signal diagnostics for the
base model, then a short GAIN-RL run whose checkpoints land in the checkpoint store; one tick
of the rescoring sensor turns them into partitions, which are scored, ranked, reported and
evaluated in turn.
Runs go into the persistent Dagster instance at $DAGSTER_HOME, so `make ui` shows them.
"""

import os
import sys
import time

import dagster as dg
import polars as pl

from gainrl_ops.core.layout import Layout
from gainrl_ops.curriculum.catalog import EXAMPLE_QUERIES, query
from gainrl_ops.data.sources import DatasetSource

from .definitions import defs
from .defs.curriculum.automation import new_checkpoint_sensor
from .defs.training.automation import training_runs_sensor
from .resources import default_resources

PREPARE = ["raw_dataset", "base_checkpoint", "tokenized_shards"]
RESCORE = ["angle_scores", "curriculum", "curriculum_report", "curriculum_export", "evaluation"]
DEMO_RUN = os.environ.get("GAINRL_DEMO_RUN", "gainrl-demo")
# Run config of the demo's pass rates: a seeded sample, as many tokens as the demo run's rollouts may take.
PASS_RATES = {"pass_rates": {"config": {"sample": 256, "k": 8, "max_new_tokens": 48, "seed": 0}}}
DATASET = os.environ.get("GAINRL_DATASET_NAME", DatasetSource.name)


def _materialize(instance: dg.DagsterInstance, selection: list[str], partition: str | None = None, ops: dict | None = None) -> dg.ExecuteInProcessResult:
    everything = [*defs.assets, *defs.asset_checks]
    result = dg.materialize(
        everything, selection=selection, partition_key=partition, instance=instance, resources=default_resources(),
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}, "ops": ops or {}},  # Dagster's step events are DEBUG
    )
    evaluations = result.get_asset_check_evaluations()
    failed = [e.check_name for e in evaluations if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]
    if failed:
        raise SystemExit(f"asset checks failed: {failed}")
    for warning in (e for e in evaluations if not e.passed):
        print(f"warning: asset check {warning.check_name} did not pass")
    return result


def _step_seconds(result: dg.ExecuteInProcessResult) -> dict[str, float]:
    """Seconds per asset in one run, from Dagster's step events; a graph asset's steps
    (one per shard) are summed under the asset's name."""
    seconds: dict[str, float] = {}
    for event in result.get_step_success_events():
        asset = event.step_key.split(".")[0].split("[")[0]
        seconds[asset] = seconds.get(asset, 0.0) + event.event_specific_data.duration_ms / 1000
    return seconds


class _Phases:
    """Wall time of each demo phase and the step seconds of its assets, over all its runs."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.steps: dict[str, dict[str, float]] = {}

    def run(self, phase: str, instance: dg.DagsterInstance, selection: list[str], partition: str | None = None, ops: dict | None = None) -> dg.ExecuteInProcessResult:
        started = time.perf_counter()
        result = _materialize(instance, selection, partition, ops)
        self.wall[phase] = self.wall.get(phase, 0.0) + time.perf_counter() - started
        steps = self.steps.setdefault(phase, {})
        for asset, seconds in _step_seconds(result).items():
            steps[asset] = steps.get(asset, 0.0) + seconds
        return result

    def table(self, total: float) -> pl.DataFrame:
        """One row per phase: its wall seconds (Dagster's run start-up included) and its three
        slowest steps (asset or check) by step seconds; then the whole demo."""
        rows = [
            {"phase": phase, "seconds": round(wall, 1),
             "slowest steps (seconds)": ", ".join(f"{a} {s:.1f}" for a, s in sorted(self.steps[phase].items(), key=lambda kv: -kv[1])[:3])}
            for phase, wall in self.wall.items()
        ]
        return pl.DataFrame([*rows, {"phase": "total", "seconds": round(total, 1), "slowest steps (seconds)": ""}])


def _tick(instance: dg.DagsterInstance, sensor: dg.SensorDefinition) -> list[str]:
    """One evaluation of a sensor, its new partitions added as the daemon would add them;
    returns the partitions of the runs it requested."""
    with dg.build_sensor_context(instance=instance, resources=default_resources()) as context:
        result = sensor(context)
    if isinstance(result, dg.SkipReason):
        return []
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return [r.partition_key for r in result.run_requests or []]


def main() -> int:
    started = time.perf_counter()
    instance = dg.DagsterInstance.get()
    phases = _Phases()
    prepared = phases.run("prepare (builds the model on first run)", instance, PREPARE)
    base = next(e for e in prepared.get_asset_materialization_events() if e.asset_key.to_user_string() == "base_checkpoint")
    checkpoint = base.step_materialization_data.materialization.metadata["checkpoint"].value
    phases.run("base checkpoint: score, rank, report, evaluate", instance, RESCORE, partition=checkpoint)
    print(f"\nbase checkpoint {checkpoint}: scored, ranked, reported and evaluated ({time.perf_counter() - started:.0f} s)")
    rated = phases.run("base checkpoint: pass rates of 256 prompts", instance, ["pass_rates", "curriculum_report"], partition=checkpoint, ops=PASS_RATES)
    meta = next(e for e in rated.get_asset_materialization_events() if e.asset_key.to_user_string() == "pass_rates").step_materialization_data.materialization.metadata
    print(f"pass rates: mean {meta['mean_pass_rate'].value:.3f} over {meta['dagster/row_count'].value} sampled prompts, k = 8 ({phases.wall['base checkpoint: pass rates of 256 prompts']:.0f} s)")
    diagnosed = phases.run("signal diagnostics", instance, ["signal_diagnostics"], partition=checkpoint)
    (event,) = diagnosed.get_asset_materialization_events()
    print(f"signal diagnostics: {event.step_materialization_data.materialization.metadata['verdict'].value}")

    _tick(instance, training_runs_sensor)
    phases.run(f"GRPO run {DEMO_RUN}", instance, ["training_run"], partition=DEMO_RUN)
    new = _tick(instance, new_checkpoint_sensor)
    print(f"training run {DEMO_RUN} saved {len(new)} checkpoints; the sensor requested their rescoring")
    for partition in new:
        phases.run(f"{len(new)} new checkpoints: score, rank, report, evaluate", instance, RESCORE, partition=partition)

    layout = Layout.default()
    summary = query(layout.root, """
        SELECT c.name AS checkpoint, c.fingerprint, round(avg(e.correct::INT), 3) AS held_out_accuracy, count(*) AS problems
        FROM evaluations e JOIN checkpoints c ON c.fingerprint = e.checkpoint
        GROUP BY ALL ORDER BY min(c.registered_at)""")
    with pl.Config(tbl_hide_dataframe_shape=True, tbl_width_chars=120):
        print(summary)
    with pl.Config(tbl_hide_dataframe_shape=True, tbl_width_chars=140, fmt_str_lengths=80, tbl_hide_column_data_types=True):
        print(f"\nWhere the time went (seconds):\n{phases.table(time.perf_counter() - started)}")
    print(f"\nDone in {time.perf_counter() - started:.0f} s. DuckDB catalog: {layout.catalog}\nTry:")
    for sql in EXAMPLE_QUERIES:
        print(f"\n  .venv/bin/gainrl sql \"{' '.join(sql.split())}\"")
    print(f"\nExport the curriculum for another trainer (verl, hf, jsonl, pt):\n\n  .venv/bin/gainrl export --dataset {DATASET} --format verl --out curriculum.parquet")
    print("\nOr browse the assets, runs and plots: make ui  (then open http://127.0.0.1:3000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
