"""The Dagster pipeline end to end, through Dagster's own `materialize` and sensor APIs."""

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from gainrl_ops.core import layout as tree
from gainrl_ops.core.layout import Layout
from gainrl_ops.data.datasets import DatasetError
from gainrl_ops.data.versions import current_label
from gainrl_ops.scoring.hardware import resolve_dtype
from pipelines.definitions import defs
from pipelines.defs.curriculum.automation import (
    new_checkpoint_sensor,
    rescore_latest_schedule,
)
from pipelines.defs.training.automation import training_runs_sensor
from pipelines.resources import (
    CheckpointStoreResource,
    DatasetResource,
    DiagnosticsResource,
    HeldOutResource,
    ModelResource,
    ScoringResource,
    StorageResource,
    TrainingResource,
    default_resources,
)

ALL = [*defs.assets, *defs.asset_checks]
PREPARE = ["raw_dataset", "base_checkpoint", "tokenized_shards"]
RESCORE = ["angle_scores", "curriculum", "curriculum_report", "curriculum_export"]
N_PROMPTS = 60
DIAGNOSED = 24
# Two short epochs of the demo run, small enough for a test; same partition name as the bundled file.
TEST_RUNS = """
gainrl-demo: {sampler: gainrl, epochs: 2, subset_size: 8, checkpoint_every: 1,
              grpo: {num_generations: 4, per_device_train_batch_size: 16, max_completion_length: 16, learning_rate: 0.001}}
length-demo: {sampler: length, epochs: 1, subset_size: 8, sigma_frac: 0.05,
              grpo: {num_generations: 4, per_device_train_batch_size: 16, max_completion_length: 16, learning_rate: 0.001}}
"""


def catalog_path(root: Path) -> Path:
    return Layout(root).catalog


def _resources(root: Path, model_path: Path, n_problems: int = N_PROMPTS, **model: str) -> dict:
    runs = root.with_name(f"{root.name}-runs.yaml")  # beside the storage root, not in it
    runs.write_text(TEST_RUNS)
    return default_resources(
        storage=StorageResource(root=str(root)),
        checkpoint_store=CheckpointStoreResource(settle_seconds=0),
        dataset=DatasetResource(n_problems=n_problems, seed=3, max_steps=1, max_digits=1),
        model=ModelResource(base_model=str(model_path), **model),
        scoring=ScoringResource(shard_size=25),
        training=TrainingResource(runs_file=str(runs)),
        held_out=HeldOutResource(n_problems=16),
        diagnostics=DiagnosticsResource(sample_size=DIAGNOSED, num_generations=4, max_completion_length=16, n_boot=200),
    )


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def _checks_passed(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def _prepare(instance: dg.DagsterInstance, root: Path, model_path: Path) -> str:
    result = dg.materialize(ALL, selection=PREPARE, instance=instance, resources=_resources(root, model_path))
    assert result.success
    assert _checks_passed(result) == {"spans_not_empty": True}
    (partition,) = instance.get_dynamic_partitions("checkpoints")
    return partition


def _rescore(instance: dg.DagsterInstance, root: Path, model_path: Path, partition: str) -> dg.ExecuteInProcessResult:
    result = dg.materialize(ALL, selection=RESCORE, partition_key=partition, instance=instance, resources=_resources(root, model_path))
    assert result.success
    return result


def test_definitions_load_with_every_asset_job_sensor_and_schedule() -> None:
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert keys == {"raw_dataset", "base_checkpoint", "tokenized_shards", "angle_scores", "curriculum", "curriculum_report", "curriculum_export", "training_run", "evaluation", "signal_diagnostics", "pass_rates"}
    assert {j.name for j in repo.get_all_jobs()} >= {"prepare_dataset", "rescore_checkpoint", "diagnose_checkpoint", "train", "estimate_difficulty"}
    assert sorted(s.name for s in repo.sensor_defs) == ["new_checkpoint_sensor", "training_runs_sensor"]
    assert [s.name for s in repo.schedule_defs] == ["rescore_latest_schedule"]


def test_chain_materializes_scores_curriculum_and_report(instance, tmp_path: Path, tiny_model_path: Path) -> None:
    partition = _prepare(instance, tmp_path, tiny_model_path)
    result = _rescore(instance, tmp_path, tiny_model_path, partition)
    assert _checks_passed(result) == {"every_prompt_scored_once": True, "scores_are_finite": True, "rank_is_permutation": True}

    materializations = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
    score_meta = materializations["angle_scores"].step_materialization_data.materialization.metadata
    assert score_meta["dagster/row_count"].value == N_PROMPTS and score_meta["checkpoint"].value == partition
    assert score_meta["scoring_mode"].value.startswith("shared prefix on 3 of 3 shards (")
    report_meta = materializations["curriculum_report"].step_materialization_data.materialization.metadata
    assert report_meta["n_prompts"].value == N_PROMPTS and "plot_score_histogram" in report_meta
    assert "question length" in report_meta["ranking_agreement"].value
    export_meta = materializations["curriculum_export"].step_materialization_data.materialization.metadata
    assert export_meta["dagster/row_count"].value == N_PROMPTS and export_meta["checkpoint"].value == partition
    assert all(Path(export_meta[f"path_{fmt}"].value).exists() for fmt in ("verl", "hf", "jsonl", "pt"))

    with duckdb.connect(str(catalog_path(tmp_path)), read_only=True) as con:
        rows = con.execute("SELECT count(*), count(DISTINCT id), min(rank), max(rank) FROM curriculum WHERE checkpoint = ?", [partition]).fetchall()
        assert rows == [(N_PROMPTS, N_PROMPTS, 1, N_PROMPTS)]
        (model,) = con.execute("SELECT DISTINCT model FROM scores").fetchall()
        assert model == ("base",)
        (dtype,) = con.execute("SELECT DISTINCT dtype FROM scores").fetchall()
        assert dtype == (resolve_dtype("auto", "auto"),)  # the model resource's default, resolved on this machine


def test_a_new_dataset_version_is_served_only_once_its_scores_are_published(instance, tmp_path: Path, tiny_model_path: Path) -> None:
    from gainrl_ops.curriculum.catalog import query

    partition = _prepare(instance, tmp_path, tiny_model_path)
    score = ["angle_scores", "curriculum"]
    assert dg.materialize(ALL, selection=score, partition_key=partition, instance=instance, resources=_resources(tmp_path, tiny_model_path)).success
    served = query(tmp_path, "SELECT id, rank, angle_score FROM curriculum ORDER BY rank")
    bigger = _resources(tmp_path, tiny_model_path, n_problems=N_PROMPTS + 20)
    assert dg.materialize(ALL, selection=PREPARE, instance=instance, resources=bigger).success
    assert query(tmp_path, "SELECT id, rank, angle_score FROM curriculum ORDER BY rank").equals(served), "the new version has no scores yet"
    versions = query(tmp_path, "SELECT served, loaded, prompts, file IS NOT NULL AS has_file FROM dataset_versions ORDER BY prompts")
    assert versions.select("served", "loaded", "has_file").rows() == [(True, False, True), (False, True, True)]
    assert dg.materialize(ALL, selection=score, partition_key=partition, instance=instance, resources=bigger).success
    assert query(tmp_path, "SELECT count(*) AS n FROM curriculum")["n"].to_list() == [versions["prompts"][1]]
    assert query(tmp_path, "SELECT served, loaded FROM dataset_versions ORDER BY prompts").rows() == [(False, False), (True, True)]


def test_few_shot_file_renders_turns_and_keys_the_shards_by_its_content(instance, tmp_path: Path, tiny_model_path: Path) -> None:
    root, shots = tmp_path / "root", tmp_path / "shots.json"
    shots.write_text(json.dumps([{"question": "What is 1 + 1?", "answer": "#### 2"}]))
    result = dg.materialize(ALL, selection=PREPARE, instance=instance, resources=_resources(root, tiny_model_path, few_shot_file=str(shots)))
    assert result.success and _checks_passed(result) == {"spans_not_empty": True}
    layout = Layout(root)
    (version,) = [p.name for p in (root / "datasets" / "arithmetic").iterdir() if p.is_dir()]
    first = json.loads(layout.current_shards("arithmetic", version).read_text())["prompt_fingerprint"]
    manifest = json.loads((layout.shards("arithmetic", version, first) / "manifest.json").read_text())
    assert manifest["prompt_config"]["few_shot"] == [["What is 1 + 1?", "#### 2"]]

    shots.write_text(json.dumps([{"question": "What is 1 + 1?", "answer": "1 + 1 = 2\n#### 2"}]))  # same path, new content
    assert dg.materialize(ALL, selection=["tokenized_shards"], instance=instance, resources=_resources(root, tiny_model_path, few_shot_file=str(shots))).success
    assert json.loads(layout.current_shards("arithmetic", version).read_text())["prompt_fingerprint"] != first

    shots.write_text(json.dumps([{"answer": "#### 2"}]))
    with pytest.raises(DatasetError, match=r"shots\.json, row 0, field 'question': missing"):
        dg.materialize(ALL, selection=["tokenized_shards"], instance=instance, resources=_resources(root, tiny_model_path, few_shot_file=str(shots)))


def test_signal_diagnostics_writes_rows_plot_verdict_and_sql_view(instance, tmp_path: Path, tiny_model_path: Path) -> None:
    partition = _prepare(instance, tmp_path, tiny_model_path)
    _rescore(instance, tmp_path, tiny_model_path, partition)
    result = dg.materialize(ALL, selection=["signal_diagnostics"], partition_key=partition, instance=instance, resources=_resources(tmp_path, tiny_model_path))
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "angle_predicts_gradient" and check.severity == dg.AssetCheckSeverity.WARN

    (event,) = result.get_asset_materialization_events()
    meta = event.step_materialization_data.materialization.metadata
    verdict = meta["verdict"].value
    assert verdict.startswith(f"angle predicts gradient norm beyond length: {'yes' if check.passed else 'no'} at 95%")
    assert meta["dagster/row_count"].value == DIAGNOSED
    assert meta["grpo_rows"].value + meta["reference_nll_rows"].value == DIAGNOSED
    assert meta["plot"].value.startswith("![") and Path(meta["path"].value).exists()

    with duckdb.connect(str(catalog_path(tmp_path)), read_only=True) as con:
        rows = con.execute(
            "SELECT count(DISTINCT d.id), count(*) FILTER (WHERE d.grad_norm > 0), count(*) FILTER (WHERE d.angle_score = c.angle_score) "
            "FROM diagnostics d JOIN curriculum c USING (checkpoint, id) WHERE d.checkpoint = ?", [partition]
        ).fetchall()
    # Every sampled prompt once, a positive norm for each, and the scores it was ranked by.
    assert rows == [(DIAGNOSED, DIAGNOSED, DIAGNOSED)]


def test_rescoring_a_partition_replaces_it_without_duplicates(instance, tmp_path: Path, tiny_model_path: Path) -> None:
    partition = _prepare(instance, tmp_path, tiny_model_path)
    _rescore(instance, tmp_path, tiny_model_path, partition)
    first = pl.read_parquet(tmp_path / "scores" / "dataset=arithmetic" / "*" / "*" / f"checkpoint={partition}" / "scores.parquet").sort("id")
    result = _rescore(instance, tmp_path, tiny_model_path, partition)
    second = pl.read_parquet(tmp_path / "scores" / "dataset=arithmetic" / "*" / "*" / f"checkpoint={partition}" / "scores.parquet").sort("id")
    assert second.equals(first)
    meta = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}["angle_scores"]
    assert meta.step_materialization_data.materialization.metadata["parts_reused"].value == 3
    assert not list((tmp_path / "scores").rglob("_staging-*"))


def test_a_scoring_run_keeps_its_planned_version_when_raw_dataset_changes_mid_run(instance, tmp_path: Path, tiny_model_path: Path) -> None:
    """raw_dataset is materialized with other content after the plan step and before any
    shard step: the run scores and publishes the planned version, whole, and nothing else."""
    partition = _prepare(instance, tmp_path, tiny_model_path)
    planned = current_label(Layout(tmp_path), "arithmetic").version
    other = {**_resources(tmp_path, tiny_model_path), "dataset": DatasetResource(n_problems=N_PROMPTS + 7, seed=4, max_steps=1, max_digits=1)}

    @dg.success_hook
    def remake_raw_dataset(context: dg.HookContext) -> None:
        if context.op.name == "plan_scoring":
            with dg.instance_for_test() as elsewhere:
                assert dg.materialize(ALL, selection=["raw_dataset"], instance=elsewhere, resources=other).success

    # The scoring steps alone: the asset checks read the dataset's current version, which is the new one here.
    job = dg.define_asset_job("score_mid_change", selection=dg.AssetSelection.assets("angle_scores").without_checks(), hooks={remake_raw_dataset})
    scoring = dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=[job], resources=_resources(tmp_path, tiny_model_path))
    result = scoring.resolve_job_def("score_mid_change").execute_in_process(instance=instance, partition_key=partition)

    assert result.success
    now = current_label(Layout(tmp_path), "arithmetic")
    assert now.version != planned and now.rows == N_PROMPTS + 7  # the dataset did change during the run
    published = pl.read_parquet(tmp_path / "scores" / "dataset=arithmetic" / "*" / "*" / "*" / "scores.parquet")
    assert published.height == N_PROMPTS and published["dataset_version"].unique().to_list() == [planned]
    planned_ids = pl.read_parquet(Layout(tmp_path).prompts("arithmetic", planned))["id"].sort()
    assert published["id"].sort().equals(planned_ids)
    meta = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}["angle_scores"]
    assert meta.step_materialization_data.materialization.metadata["dataset_version"].value == planned


def _tick(instance: dg.DagsterInstance, resources: dict, cursor: str | None = None) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
        return new_checkpoint_sensor(context)


def test_sensor_registers_a_copied_checkpoint_once_it_held_still_for_two_ticks(instance, tmp_path: Path, tiny_model_path: Path) -> None:
    _prepare(instance, tmp_path, tiny_model_path)
    resources = {k: v for k, v in _resources(tmp_path, tiny_model_path).items() if k in ("storage", "checkpoint_store")}
    assert not _tick(instance, resources).run_requests  # the base is already a partition

    # A person copies a checkpoint into the store with `cp -p`: old modification times.
    new = tmp_path / "checkpoints" / "step-100"
    shutil.copytree(tiny_model_path, new, copy_function=shutil.copy2)
    config = json.loads((new / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5  # different content, so a different fingerprint
    (new / "config.json").write_text(json.dumps(config))

    first = _tick(instance, resources)
    assert not first.run_requests, "one look proves nothing, whatever the mtimes say"
    second = _tick(instance, resources, first.cursor)
    assert len(second.run_requests) == 1
    (request,) = second.dynamic_partitions_requests
    assert request.partition_keys == [second.run_requests[0].partition_key] == [second.run_requests[0].run_key]
    assert second.run_requests[0].tags == {"gainrl/checkpoint": "step-100"}, "the Runs page names the checkpoint"
    instance.add_dynamic_partitions("checkpoints", request.partition_keys)
    assert not _tick(instance, resources, second.cursor).run_requests


def test_schedule_requests_the_latest_checkpoint(instance, tmp_path: Path, tiny_model_path: Path) -> None:
    partition = _prepare(instance, tmp_path, tiny_model_path)
    resources = {k: v for k, v in _resources(tmp_path, tiny_model_path).items() if k in ("storage", "checkpoint_store")}
    with dg.build_schedule_context(instance=instance, resources=resources, scheduled_execution_time=datetime(2026, 11, 21, 3, tzinfo=timezone.utc)) as context:
        (request,) = rescore_latest_schedule(context)
    assert request.partition_key == partition and request.tags == {"gainrl/checkpoint": "base"}


def test_training_run_writes_selections_and_checkpoints_that_the_sensor_rescores(instance, tmp_path: Path, tiny_model_path: Path) -> None:
    base = _prepare(instance, tmp_path, tiny_model_path)
    _rescore(instance, tmp_path, tiny_model_path, base)
    resources = _resources(tmp_path, tiny_model_path)
    with dg.build_sensor_context(instance=instance, resources={"training": resources["training"]}) as context:
        (request,) = training_runs_sensor(context).dynamic_partitions_requests
    assert sorted(request.partition_keys) == ["gainrl-demo", "length-demo"], "the sensor turns the runs file into partitions"
    instance.add_dynamic_partitions("training_runs", list(request.partition_keys))
    result = dg.materialize(ALL, selection=["training_run"], partition_key="gainrl-demo", instance=instance, resources=resources)
    assert result.success

    with duckdb.connect(str(catalog_path(tmp_path)), read_only=True) as con:
        epochs = con.sql("SELECT epoch, mu, sigma, accuracy, feedback_angle, held_out_accuracy FROM epochs WHERE run = 'gainrl-demo' ORDER BY epoch").fetchall()
        selected = con.sql("SELECT epoch, count(DISTINCT id), list(rank ORDER BY rank) FROM selections GROUP BY epoch ORDER BY epoch").fetchall()
        ids_match = con.sql(
            "SELECT bool_and(s.id = c.id) FROM selections s JOIN curriculum c ON c.rank = s.rank AND c.checkpoint = ?", params=[base]
        ).fetchall()
        children = con.sql(f"SELECT name, parent FROM checkpoints WHERE parent = '{base}' ORDER BY name").fetchall()
    assert [row[0] for row in epochs] == [0, 1] and epochs[0][1] == 0.0, "epoch 0 starts at the top of the ranking"
    assert all(0.0 <= row[3] <= 1.0 and row[5] is not None for row in epochs)
    assert all(-1.0 < row[4] < 1.0 for row in epochs), "the rollouts' feedback angle, a cosine, is in the view"
    # Replaying the run's sampler on the recorded feedback draws exactly the recorded ranks,
    # 8 distinct prompts per epoch, each stored with the id the base curriculum ranks there.
    sampler = TrainingResource(runs_file=str(tmp_path.with_name(f"{tmp_path.name}-runs.yaml"))).run("gainrl-demo").make_sampler(N_PROMPTS)
    replayed = []
    for epoch, _, _, accuracy, angle, _ in epochs:
        replayed.append((epoch, 8, sorted(int(r) + 1 for r in sampler.select(epoch))))
        sampler.update(accuracy, angle)
    assert selected == replayed and ids_match == [(True,)]
    assert [name for name, _ in children] == ["gainrl-demo-epoch001", "gainrl-demo-epoch002"]

    # The checkpoints differ from the base: GRPO changed the weights.
    store = CheckpointStoreResource(settle_seconds=0).store(StorageResource(root=str(tmp_path)).layout)
    assert len({r.fingerprint for r in store.records()}) == 3

    sensor_resources = {k: v for k, v in resources.items() if k in ("storage", "checkpoint_store")}
    with dg.build_sensor_context(instance=instance, resources=sensor_resources) as context:
        tick = new_checkpoint_sensor(context)
    assert len(tick.run_requests) == 2
    new = tick.run_requests[0].partition_key
    instance.add_dynamic_partitions("checkpoints", [r.partition_key for r in tick.run_requests])
    rescored = dg.materialize(ALL, selection=[*RESCORE, "evaluation"], partition_key=new, instance=instance, resources=resources)
    assert all(_checks_passed(rescored).values())
    events = {m.asset_key.to_user_string(): m.step_materialization_data.materialization.metadata for m in rescored.get_asset_materialization_events()}
    assert 0.0 <= events["evaluation"]["accuracy"].value <= 1.0
    assert events["curriculum_report"]["previous_checkpoint"].value == base, "the report compares with the parent"

    # Every file the whole loop wrote lies where `Layout` says that kind of artifact lives.
    layout = Layout(tmp_path)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert [p for p in files if layout.kind_of(p) is None] == []
    kinds = {layout.kind_of(p) for p in files}
    assert {tree.PROMPTS, tree.SHARD, tree.SCORES, tree.SCORE_PART, tree.RANKING, tree.REPORT_PLOT, tree.EPOCHS, tree.EVALUATION, tree.CHECKPOINT_RECORD} <= kinds


def test_a_length_run_trains_shortest_questions_first_from_the_catalog(instance, tmp_path: Path, tiny_model_path: Path) -> None:
    base = _prepare(instance, tmp_path, tiny_model_path)
    _rescore(instance, tmp_path, tiny_model_path, base)
    instance.add_dynamic_partitions("training_runs", ["length-demo"])
    result = dg.materialize(ALL, selection=["training_run"], partition_key="length-demo", instance=instance, resources=_resources(tmp_path, tiny_model_path))
    assert result.success
    with duckdb.connect(str(catalog_path(tmp_path)), read_only=True) as con:
        # The run's ranks index the order by question tokens, ties by id.
        ordered = con.sql(
            "SELECT s.rank, t.question_end - t.question_start AS n, s.id FROM selections s JOIN tokens t USING (id) "
            "WHERE s.run = 'length-demo' ORDER BY s.rank"
        ).fetchall()
        lengths = con.sql("SELECT question_end - question_start AS n, id FROM tokens ORDER BY n, id").fetchall()
        (sampler, angle), = con.sql("SELECT sampler, feedback_angle FROM epochs WHERE run = 'length-demo'").fetchall()
    assert [(n, i) for _, n, i in ordered] == [lengths[rank - 1] for rank, _, _ in ordered]
    assert sampler == "length" and -1 < angle < 1
    assert sum(rank for rank, _, _ in ordered) / len(ordered) < N_PROMPTS / 4, "epoch 0 starts at the short end"
