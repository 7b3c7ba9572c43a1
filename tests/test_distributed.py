"""Scoring on a real distributed engine: a Redis broker, two dagster-celery workers in processes
of their own, and `dagster asset materialize` with the run config's `celery` executor, as the
README tells a user to run it. The scores equal those of an in-process run, and every step ran
in a worker, both workers taking some.

Needs Debian's `redis-server` (`make test` installs it); skips cleanly without it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

from pipelines.definitions import defs
from pipelines.resources import (
    CheckpointStoreResource,
    DatasetResource,
    ModelResource,
    ScoringResource,
    StorageResource,
    default_resources,
)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ALL = [*defs.assets, *defs.asset_checks]
N_PROMPTS = 48
SHARD_SIZE = 12  # four scoring steps, so two workers both get some
DATASET = {"n_problems": N_PROMPTS, "seed": 3, "max_steps": 1, "max_digits": 1}
WORKERS = ("gainrl-w1", "gainrl-w2")
START_TIMEOUT_S = 180  # a worker imports dagster and celery; slow on a loaded 2-core box
RUN_TIMEOUT_S = 300
STOP_TIMEOUT_S = 20

if shutil.which("redis-server") is None:
    pytest.skip("redis-server is not installed: apt-get install redis-server (make test installs it)", allow_module_level=True)
redis = pytest.importorskip("redis", reason="the redis client is not installed: pip install 'dagster-celery[redis]'")
pytestmark = [pytest.mark.timeout(900)] if importlib.util.find_spec("pytest_timeout") is not None else []


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(log: Path, n: int = 60) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A process leading its own process group, so stopping it stops what it started too."""
    with log.open("wb") as out:
        return subprocess.Popen(args, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group (Celery: warm shutdown; Redis: exit), SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; a child of the group may not be.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A private Redis on a free localhost port: no persistence, files in a temporary folder."""
    port, data, log = _free_port(), tmp_path / "redis", tmp_path / "redis.log"
    data.mkdir()
    proc = _start(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(data)], log
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.skip(f"redis-server did not start on port {port}; log tail:\n{_tail(log)}")
                time.sleep(0.2)
        yield f"redis://127.0.0.1:{port}"
    finally:
        _stop(proc)


def _resources(root: Path, model_path: Path) -> dict:
    return default_resources(
        storage=StorageResource(root=str(root)),
        checkpoint_store=CheckpointStoreResource(settle_seconds=0),
        dataset=DatasetResource(**DATASET),
        model=ModelResource(base_model=str(model_path)),
        scoring=ScoringResource(shard_size=SHARD_SIZE),
    )


def _run_config(root: Path, model_path: Path, broker: str, backend: str) -> dict:
    """The same resources as `_resources`, as a user would give them at launch."""
    return {
        "execution": {"config": {"celery": {"broker": broker, "backend": backend}}},
        "resources": {
            "storage": {"config": {"root": str(root)}},
            "checkpoint_store": {"config": {"settle_seconds": 0}},
            "dataset": {"config": DATASET},
            "model": {"config": {"base_model": str(model_path)}},
        },
    }


def _scores(root: Path, partition: str) -> pl.DataFrame:
    (path,) = (root / "scores").glob(f"dataset=arithmetic/*/*/checkpoint={partition}/scores.parquet")
    return pl.read_parquet(path).sort("id")


def _wait_for_workers(broker: str, backend: str, workers: list[subprocess.Popen], logs: list[Path]) -> None:
    """Until every worker answers a ping through the broker."""
    from celery import Celery

    app = Celery(broker=broker, backend=backend)
    deadline = time.monotonic() + START_TIMEOUT_S
    answered: set[str] = set()
    while time.monotonic() < deadline:
        for proc, log in zip(workers, logs):
            if proc.poll() is not None:
                pytest.fail(f"celery worker exited with {proc.returncode}; log tail:\n{_tail(log)}")
        answered |= {name.split("@")[0] for reply in app.control.ping(timeout=1.0) for name in reply}
        if answered >= set(WORKERS):
            return
    logs_text = "\n".join(f"--- {log.name}\n{_tail(log)}" for log in logs)
    pytest.fail(f"workers {sorted(set(WORKERS) - answered)} did not answer within {START_TIMEOUT_S} s\n{logs_text}")


def test_celery_workers_score_every_shard_as_the_in_process_run_does(
    tmp_path: Path, redis_url: str, tiny_model_path: Path
) -> None:
    started = time.monotonic()
    root, home = tmp_path / "gainrl_home", tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    broker, backend = f"{redis_url}/0", f"{redis_url}/1"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # dagster-celery starts `celery` from PATH
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "DAGSTER_HOME": str(home),
        "GAINRL_HOME": str(root),
        "PYTHONUNBUFFERED": "1",
    }
    # The workers' own config: the broker and backend, in the celery executor's config layout.
    worker_yaml = tmp_path / "celery_worker.yaml"
    worker_yaml.write_text(yaml.safe_dump({"execution": {"config": {"broker": broker, "backend": backend}}}))
    logs = [tmp_path / f"{name}.log" for name in WORKERS]
    # Opening the instance creates its SQLite storage; workers that start before that race to
    # create and stamp the same databases, and the loser exits on a UNIQUE constraint.
    dg.DagsterInstance.from_config(str(home)).dispose()
    workers = [
        _start([str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(worker_yaml), "-n", name, "-i", "pipelines.definitions", "--", "--pool", "solo"], log, env)
        for name, log in zip(WORKERS, logs)
    ]
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            # Prepared and scored once in this process while the workers start.
            prepared = dg.materialize(ALL, selection=["raw_dataset", "base_checkpoint", "tokenized_shards"], instance=instance, resources=_resources(root, tiny_model_path))
            assert prepared.success
            (partition,) = instance.get_dynamic_partitions("checkpoints")
            local = dg.materialize(ALL, selection=["angle_scores"], partition_key=partition, instance=instance, resources=_resources(root, tiny_model_path))
            assert local.success
            expected = _scores(root, partition)
            assert expected.height == N_PROMPTS
            shutil.rmtree(root / "scores")  # nothing left to reuse: the workers score every shard
            in_process_s = time.monotonic() - started

            _wait_for_workers(broker, backend, workers, logs)
            ready_s = time.monotonic() - started
            config = tmp_path / "run.yaml"
            config.write_text(yaml.safe_dump(_run_config(root, tiny_model_path, broker, backend)))
            cli_log = tmp_path / "materialize.log"
            cli = _start(
                [str(BIN / "dagster"), "asset", "materialize", "-m", "pipelines.definitions", "--select", "angle_scores", "--partition", partition, "-c", str(config)],
                cli_log, env,
            )
            try:
                cli.wait(timeout=RUN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
            finally:
                _stop(cli)
            run_s = time.monotonic() - started
            worker_logs = "\n".join(f"--- {log.name}\n{_tail(log)}" for log in logs)
            assert cli.returncode == 0, f"dagster asset materialize failed or ran past {RUN_TIMEOUT_S} s:\n{_tail(cli_log)}\n{worker_logs}"

            (run,) = [r for r in instance.get_runs() if r.run_id not in (prepared.run_id, local.run_id)]
            assert run.status == dg.DagsterRunStatus.SUCCESS
            events = [e.dagster_event for e in instance.all_logs(run.run_id) if e.dagster_event is not None]
            started_steps = {e.step_key for e in events if e.event_type == dg.DagsterEventType.STEP_START}
            # dagster-celery's task reports the worker that runs each step.
            ran_on = {
                e.step_key: e.engine_event_data.metadata["Celery worker"].value
                for e in events
                if e.event_type == dg.DagsterEventType.ENGINE_EVENT and "Celery worker" in e.engine_event_data.metadata
            }
            assert len([k for k in started_steps if "score_shard_step[" in k]) == N_PROMPTS // SHARD_SIZE
            assert set(ran_on) == started_steps, "every step ran in a celery worker, none in the launching process"
            assert {name.split("@")[0] for name in ran_on.values()} == set(WORKERS), f"steps per worker: {ran_on}"

            meta = instance.get_latest_materialization_event(dg.AssetKey("angle_scores")).asset_materialization.metadata
            assert (meta["parts_scored"].value, meta["parts_reused"].value) == (N_PROMPTS // SHARD_SIZE, 0)
            distributed = _scores(root, partition)
            assert_frame_equal(distributed, expected, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
            print(f"\nsteps per worker: {json.dumps(ran_on, indent=1)}")
            print(f"in-process prepare and scoring done at {in_process_s:.1f} s, workers ready at {ready_s:.1f} s, celery run done at {run_s:.1f} s")
    finally:
        for proc in workers:
            _stop(proc)
