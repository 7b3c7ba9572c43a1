"""`make demo`: the whole loop on the embedded default, through the project's own Dagster jobs.

prepare_dataset (dataset, base model, shards) -> estimate_difficulty on the base model (pass
rates of a seeded sample of 256 prompts, 8 completions each) -> rescore_checkpoint on the base
model (scores, curriculum, report with its agreement with the pass rates, export, evaluation) -> diagnose_checkpoint (signal diagnostics) -> train (a
short GAIN-RL run whose checkpoints land in the checkpoint store) -> rescore_checkpoint on each
checkpoint the rescoring sensor finds. Each phase is one entry of `PHASES`; each run prints one
line (its seconds and what it made), Dagster's own log stays at WARNING.
Runs go into the persistent Dagster instance at $DAGSTER_HOME, so `make ui` shows them by job
name, with a `gainrl/checkpoint` tag on every run of a checkpoint partition.
Scoring and evaluation run in float32 here, whatever the CPU, so that the figures printed are
the same on every machine; the precision is printed first.
"""

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg
import polars as pl

from gainrl_ops.core.layout import Layout
from gainrl_ops.curriculum.catalog import EXAMPLE_QUERIES, query
from gainrl_ops.data.sources import DatasetSource
from gainrl_ops.scoring.hardware import AUTO, resolve_dtype

from . import partitions
from .definitions import defs
from .defs.curriculum.automation import new_checkpoint_sensor
from .defs.training.automation import training_runs_sensor
from .instance import prepare_instance_home
from .resources import CheckpointStoreResource, StorageResource, default_resources

DEMO_RUN = os.environ.get("GAINRL_DEMO_RUN", "gainrl-demo")
DATASET = os.environ.get("GAINRL_DATASET_NAME", DatasetSource.name)
# The pass rates the report compares the angle with: a seeded sample, as many tokens as the demo run's rollouts may take.
PASS_RATES = {"pass_rates": {"config": {"sample": 256, "k": 8, "max_new_tokens": 48, "seed": 0}}}
DTYPE = "float32"
RUN_CONFIG = {
    "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    "resources": {"model": {"config": {"dtype": DTYPE}}},
}


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, object]:
    """The metadata values of `asset`'s materialization in this run."""
    (event,) = (e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset)
    return {key: value.value for key, value in event.step_materialization_data.materialization.metadata.items()}


def _step_seconds(result: dg.ExecuteInProcessResult) -> dict[str, float]:
    """Seconds per asset in one run, from Dagster's step events; a graph asset's steps
    (one per shard) are summed under the asset's name."""
    seconds: dict[str, float] = {}
    for event in result.get_step_success_events():
        asset = event.step_key.split(".")[0].split("[")[0]
        seconds[asset] = seconds.get(asset, 0.0) + event.event_specific_data.duration_ms / 1000
    return seconds


@dataclass
class Demo:
    """The instance the runs go into, and the wall and step seconds of each phase."""

    instance: dg.DagsterInstance
    wall: dict[str, float] = field(default_factory=dict)
    steps: dict[str, dict[str, float]] = field(default_factory=dict)

    def checkpoint_name(self, fingerprint: str) -> str:
        return CheckpointStoreResource().store(StorageResource().layout).get(fingerprint).name

    def base_checkpoint(self) -> str:
        """The base checkpoint's fingerprint, as its last materialization recorded it."""
        event = self.instance.get_latest_materialization_event(dg.AssetKey("base_checkpoint"))
        return event.asset_materialization.metadata["checkpoint"].value

    def tick(self, sensor: dg.SensorDefinition) -> list[str]:
        """One evaluation of a sensor, its new partitions added as the daemon would add them;
        returns the partitions of the runs it requested."""
        with dg.build_sensor_context(instance=self.instance, resources=default_resources()) as context:
            result = sensor(context)
        if isinstance(result, dg.SkipReason):
            return []
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        return [r.partition_key for r in result.run_requests or []]

    def run(self, phase: str, job_name: str, partition: str | None, ops: dict | None = None) -> tuple[dg.ExecuteInProcessResult, str]:
        """Run the job in this process on `partition` (tagged with its checkpoint's name on a
        checkpoint partition); a failed asset check of ERROR severity stops the demo. Returns
        the result and the run's label (the checkpoint's name, the partition or the job)."""
        job = defs.resolve_job_def(job_name)
        on_checkpoint = partition is not None and job.partitions_def == partitions.checkpoints
        label = self.checkpoint_name(partition) if on_checkpoint else partition or ""
        started = time.perf_counter()
        result = job.execute_in_process(
            run_config={**RUN_CONFIG, "ops": ops or {}}, instance=self.instance, partition_key=partition,
            tags=partitions.checkpoint_tags(label) if on_checkpoint else None,
        )
        self.wall[phase] = self.wall.get(phase, 0.0) + time.perf_counter() - started
        steps = self.steps.setdefault(phase, {})
        for asset, seconds in _step_seconds(result).items():
            steps[asset] = steps.get(asset, 0.0) + seconds
        evaluations = result.get_asset_check_evaluations()
        failed = [e.check_name for e in evaluations if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]
        if failed:
            raise SystemExit(f"{job_name} {label}: asset checks failed: {failed}")
        for warning in (e for e in evaluations if not e.passed):
            print(f"warning: asset check {warning.check_name} did not pass")
        return result, label

    def table(self, total: float) -> pl.DataFrame:
        """One row per phase: its wall seconds (Dagster's run start-up included) and its three
        slowest steps (asset or check) by step seconds; then the whole demo."""
        rows = [
            {"phase": phase, "seconds": round(wall, 1),
             "slowest steps (seconds)": ", ".join(f"{a} {s:.1f}" for a, s in sorted(self.steps[phase].items(), key=lambda kv: -kv[1])[:3])}
            for phase, wall in self.wall.items()
        ]
        return pl.DataFrame([*rows, {"phase": "total", "seconds": round(total, 1), "slowest steps (seconds)": ""}])


def _prepared(result: dg.ExecuteInProcessResult) -> str:
    raw, shards, base = (_metadata(result, a) for a in ("raw_dataset", "tokenized_shards", "base_checkpoint"))
    return (f"{raw['dagster/row_count']} prompts ({raw['rejected_rows']} rejected), version {raw['dataset_version']}, "
            f"{shards['shards']} shards; base checkpoint {base['checkpoint']} ({base['parameters']:,} parameters)")


def _evaluated(result: dg.ExecuteInProcessResult) -> str:
    evaluation = _metadata(result, "evaluation")
    return f"scored, ranked, reported, exported; held-out accuracy {evaluation['accuracy']:.3f} on {evaluation['dagster/row_count']} problems"


def _rated(result: dg.ExecuteInProcessResult) -> str:
    rates = _metadata(result, "pass_rates")
    return (f"pass rates of {rates['dagster/row_count']} sampled prompts, {PASS_RATES['pass_rates']['config']['k']} completions each: "
            f"mean {rates['mean_pass_rate']:.3f}")


def _diagnosed(result: dg.ExecuteInProcessResult) -> str:
    return str(_metadata(result, "signal_diagnostics")["verdict"])


def _trained(result: dg.ExecuteInProcessResult) -> str:
    run = _metadata(result, "training_run")
    return (f"{run['epochs']} epochs ({run['sampler']}), held-out accuracy {run['final_held_out_accuracy']:.3f}, "
            f"{len(run['checkpoints'])} checkpoints saved to the store")


def _once(demo: Demo) -> list[str | None]:
    return [None]


def _base(demo: Demo) -> list[str | None]:
    return [demo.base_checkpoint()]


def _demo_run(demo: Demo) -> list[str | None]:
    demo.tick(training_runs_sensor)
    return [DEMO_RUN]


def _new_checkpoints(demo: Demo) -> list[str | None]:
    return list(demo.tick(new_checkpoint_sensor))


@dataclass(frozen=True)
class Phase:
    """One step of the story: a job, run once per partition `partitions` returns (None: an
    unpartitioned job), each run summed up in one line by `summary`."""

    name: str
    job: str
    partitions: Callable[[Demo], list[str | None]]
    summary: Callable[[dg.ExecuteInProcessResult], str]
    ops: dict | None = None


PHASES = (
    Phase("prepare (builds the model on first run)", "prepare_dataset", _once, _prepared),
    Phase("base checkpoint: pass rates", "estimate_difficulty", _base, _rated, PASS_RATES),
    Phase("base checkpoint: score, rank, report, evaluate", "rescore_checkpoint", _base, _evaluated),
    Phase("signal diagnostics", "diagnose_checkpoint", _base, _diagnosed),
    Phase(f"GRPO run {DEMO_RUN}", "train", _demo_run, _trained),
    Phase("new checkpoints (rescoring sensor): score, rank, report, evaluate", "rescore_checkpoint", _new_checkpoints, _evaluated),
)


def _precision() -> str:
    auto = resolve_dtype(AUTO, AUTO)
    why = "the same figures on every CPU" + (f"; dtype auto would be {auto} on this one" if auto != DTYPE else "")
    return f"Precision: {DTYPE} for scoring, evaluation and diagnostics ({why})."


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # one order for our lines and the warnings on stderr
    started = time.perf_counter()
    prepare_instance_home()
    demo = Demo(dg.DagsterInstance.get())
    print(_precision())
    for phase in PHASES:
        for partition in phase.partitions(demo):
            run_started = time.perf_counter()
            result, label = demo.run(phase.name, phase.job, partition, phase.ops)
            print(f"{time.perf_counter() - run_started:6.1f} s  {' '.join(filter(None, (phase.job, label)))}: {phase.summary(result)}")

    layout = Layout.default()
    summary = query(layout.root, """
        SELECT c.name AS checkpoint, c.fingerprint, round(avg(e.correct::INT), 3) AS held_out_accuracy, count(*) AS problems
        FROM evaluations e JOIN checkpoints c ON c.fingerprint = e.checkpoint
        GROUP BY ALL ORDER BY min(c.registered_at)""")
    with pl.Config(tbl_hide_dataframe_shape=True, tbl_width_chars=120, tbl_hide_column_data_types=True):
        print(f"\n{summary}")
    with pl.Config(tbl_hide_dataframe_shape=True, tbl_width_chars=140, fmt_str_lengths=80, tbl_hide_column_data_types=True):
        print(f"\nWhere the time went (seconds):\n{demo.table(time.perf_counter() - started)}")
    print(f"\nDone in {time.perf_counter() - started:.0f} s. DuckDB catalog: {layout.catalog}\nTry:")
    for sql in EXAMPLE_QUERIES:
        print(f"  .venv/bin/gainrl sql \"{' '.join(sql.split())}\"")
    print(f"Export the curriculum for another trainer (verl, hf, jsonl, pt):\n  .venv/bin/gainrl export --dataset {DATASET} --format verl --out curriculum.parquet")
    print("Or browse the assets, runs and plots: make ui  (then open http://127.0.0.1:3000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
