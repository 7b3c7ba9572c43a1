"""One curriculum across processes: `train_run` on 2 CPU processes under `accelerate launch`
(torchrun, gloo), as a user runs it on 8 GPUs. Every rank moves mu by the same feedback and
trains on the same prompts, the main process alone writes, and a killed run resumes onto the
same selections. Each rank's view comes from tests/multiprocess_run.py.

Skips where two processes cannot start (no gloo, no local port).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest

from gainrl_ops.training.resume import STATE_FILE

HERE = Path(__file__).resolve().parent
EPOCHS = 3
TIMEOUT_S = 600


def _launch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1", "--num_processes", "2", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def diverged(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess:
    """Two processes that agree on epoch 0's selection and not on epoch 4's."""
    folder = tmp_path_factory.mktemp("diverged")
    (script := folder / "diverge.py").write_text(textwrap.dedent("""
        import numpy as np
        from accelerate import PartialState
        from gainrl_ops.training.ranks import check_same_selection
        state = PartialState(cpu=True)
        check_same_selection(0, np.arange(8))
        print("same selection passed on", state.num_processes, "processes", flush=True)
        check_same_selection(4, np.arange(8) + state.process_index)
    """))
    done = _launch(str(script), cwd=folder)
    if "same selection passed on 2 processes" not in done.stdout:
        pytest.skip(f"2 processes cannot start here (accelerate launch, gloo): {(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    return done


def _run(out: Path, model: Path, *kill: str) -> subprocess.CompletedProcess:
    return _launch(str(HERE / "multiprocess_run.py"), str(out), str(model), "gainrl", str(EPOCHS), *kill, cwd=HERE.parent)


def _trace(out: Path) -> dict[int, list[dict]]:
    return {rank: [json.loads(line) for line in (out / "trace" / f"rank{rank}.jsonl").read_text().splitlines()] for rank in (0, 1)}


@pytest.fixture(scope="module")
def straight(diverged, tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("straight")
    done = _run(out, tiny_model_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_a_rank_that_selected_other_prompts_fails_naming_the_epoch(diverged: subprocess.CompletedProcess) -> None:
    assert diverged.returncode != 0
    assert "RuntimeError: epoch 4: process 1 selected other prompts than process 0" in diverged.stderr


def test_every_rank_moves_mu_alike_and_trains_on_the_same_prompts(straight: Path) -> None:
    trace = _trace(straight)
    assert [e["epoch"] for e in trace[0]] == list(range(EPOCHS))
    for mine, theirs in zip(trace[0], trace[1]):
        for key in ("mu_before", "mu", "accuracy", "angle", "selection"):
            assert mine[key] == theirs[key], f"epoch {mine['epoch']}: {key} differs between the ranks"
        both = mine["reward_sum"] + theirs["reward_sum"], mine["reward_count"] + theirs["reward_count"]
        assert mine["reward_count"] == theirs["reward_count"] > 0, "each rank scored its half of the rollouts"
        assert mine["accuracy"] == both[0] / both[1], "the accuracy is over both ranks' rollouts"
    assert trace[0][-1]["mu"] > 0, "the window moved, so equal mu is not a trivial 0 == 0"

    epochs = pl.read_parquet(straight / "home" / "runs" / "mp-gainrl" / "epochs.parquet")
    assert epochs["mu_next"].to_list() == [e["mu"] for e in trace[0]]
    assert epochs["accuracy"].to_list() == [e["accuracy"] for e in trace[0]]
    selections = pl.read_parquet(straight / "home" / "runs" / "mp-gainrl" / "selections.parquet")
    assert [(selections.filter(pl.col("epoch") == e)["rank"] - 1).to_list() for e in range(EPOCHS)] == [e["selection"] for e in trace[0]]
    rollouts = pl.read_parquet(straight / "home" / "runs" / "mp-gainrl" / "rollouts.parquet")
    for mine, theirs in zip(trace[0], trace[1]):
        groups = rollouts.filter(pl.col("epoch") == mine["epoch"])
        assert groups["n"].sum() == mine["reward_count"] + theirs["reward_count"], "each prompt's group gathered from both ranks"
        assert sorted(groups["id"].to_list()) == sorted(selections.filter(pl.col("epoch") == mine["epoch"])["id"].to_list())
        assert (groups["n"] * groups["mean_reward"]).sum() == pytest.approx(mine["reward_sum"] + theirs["reward_sum"], abs=1e-9)


def test_only_the_main_process_writes(straight: Path) -> None:
    assert sorted(p.name for p in (straight / "store").iterdir()) == [f"epoch{k}-rank0" for k in range(1, EPOCHS + 1)], "one checkpoint per epoch, saved by rank 0"
    run = straight / "home" / "runs" / "mp-gainrl"
    assert sorted(p.name for p in run.iterdir()) == ["epochs.parquet", "rollouts.parquet", "selections.parquet", "state.json"], "one set of tables, no resume points left"
    assert pl.read_parquet(run / "epochs.parquet")["epoch"].to_list() == list(range(EPOCHS))


@pytest.mark.parametrize("sampler", ["uniform", "length", "difficulty", "pool"])
def test_every_sampler_draws_the_same_prompts_on_every_rank(diverged, sampler: str, tiny_model_path: Path, tmp_path: Path) -> None:
    done = _launch(str(HERE / "multiprocess_run.py"), str(tmp_path), str(tiny_model_path), sampler, "2", cwd=HERE.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    trace = _trace(tmp_path)
    assert [e["epoch"] for e in trace[0]] == [e["epoch"] for e in trace[1]] == [0, 1]
    assert [e["selection"] for e in trace[1]] == [e["selection"] for e in trace[0]], "both ranks trained on the same prompts each epoch"
    selections = pl.read_parquet(tmp_path / "home" / "runs" / f"mp-{sampler}" / "selections.parquet")
    assert [(selections.filter(pl.col("epoch") == e)["rank"] - 1).to_list() for e in (0, 1)] == [e["selection"] for e in trace[0]]
    if sampler == "uniform":
        from gainrl_ops.training.sampling import UniformSampler

        alone = UniformSampler(8, 48, seed=3)
        assert [e["selection"] for e in trace[0]] == [alone.select(e).tolist() for e in (0, 1)], "the draws of the same sampler in one process"


def test_a_killed_two_process_run_resumes_onto_the_same_selections(straight: Path, tiny_model_path: Path, tmp_path: Path) -> None:
    killed = _run(tmp_path, tiny_model_path, "1")
    assert killed.returncode != 0 and "killed in epoch 1" in killed.stderr
    run = tmp_path / "home" / "runs" / "mp-gainrl"
    assert not (run / "epochs.parquet").exists()
    points = [json.loads(p.read_text()) for p in (run / "resume").glob(f"checkpoint-*/{STATE_FILE}")]
    assert [len(p["epochs"]) for p in points] == [1], "one complete epoch to resume from"

    resumed = _run(tmp_path, tiny_model_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming after epoch 1 of 3" in resumed.stderr
    same = ["epoch", "mu", "mu_next"]
    expected = pl.read_parquet(straight / "home" / "runs" / "mp-gainrl" / "epochs.parquet").select(same)
    assert pl.read_parquet(run / "epochs.parquet").select(same).equals(expected)
    assert pl.read_parquet(run / "selections.parquet").equals(pl.read_parquet(straight / "home" / "runs" / "mp-gainrl" / "selections.parquet"))


def test_a_launch_is_accelerate_running_the_library_on_n_processes(tmp_path: Path) -> None:
    from gainrl_ops.core.layout import Layout
    from gainrl_ops.data.prompts import PromptConfig
    from gainrl_ops.scoring.checkpoints import CheckpointRecord, LocalCheckpointStore
    from gainrl_ops.training.config import TrainingRunConfig
    from gainrl_ops.training.launch import launch_command, read_inputs, write_inputs

    run = TrainingRunConfig(name="wide", num_processes=8, subset_size=256, grpo={"per_device_train_batch_size": 16})
    inputs = (
        run, LocalCheckpointStore(tmp_path / "store", 2.0), CheckpointRecord("abc", "base", "/m", "now", "test"),
        pl.DataFrame({"id": ["a", "b"], "problem": ["1+1", "2+2"], "answer": ["2", "4"]}),
        PromptConfig(few_shot=(("1+2", "3"),)), Layout(tmp_path / "home"), [("3+3", "6")],
    )
    folder = write_inputs(tmp_path / "launch", *inputs).parent
    back = read_inputs(folder)
    assert back[3].equals(inputs[3]) and back[:3] + back[4:] == inputs[:3] + inputs[4:]
    assert launch_command(run, folder)[1:] == [
        "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1", "--num_processes", "8",
        "-m", "gainrl_ops.training.launch", str(folder),
    ]
    nodes = TrainingRunConfig(name="wide", num_processes=16, subset_size=256, accelerate_config="node.yaml", grpo={"per_device_train_batch_size": 16})
    assert launch_command(nodes, folder)[3:7] == ["--config_file", "node.yaml", "--num_processes", "16"]
    with pytest.raises(ValueError, match="subset_size 8 must be a multiple of the 16 prompts per step"):
        TrainingRunConfig(name="wide", num_processes=8, subset_size=8, grpo={"per_device_train_batch_size": 16})


# The same run on 1 and on 2 processes, small enough for a test: 2 prompts a step on 2 processes.
PIPELINE_RUNS = """
one-process: {sampler: gainrl, seed: 3, epochs: 2, subset_size: 4,
              grpo: {num_generations: 2, per_device_train_batch_size: 2, max_completion_length: 12, learning_rate: 0.001}}
two-processes: {sampler: gainrl, seed: 3, epochs: 2, subset_size: 4, num_processes: 2,
                grpo: {num_generations: 2, per_device_train_batch_size: 2, max_completion_length: 12, learning_rate: 0.001}}
"""


def test_the_training_run_asset_trains_on_two_processes_as_on_one(diverged, tiny_model_path: Path, tmp_path: Path) -> None:
    """`training_run` with `num_processes: 2` through Dagster: accelerate runs the library's
    launch module on both, the main process alone writes, and the asset reports what the
    same run on one process reports."""
    import dagster as dg
    import duckdb

    from gainrl_ops.core.layout import Layout
    from gainrl_ops.scoring.checkpoints import checkpoint_fingerprint
    from pipelines.resources import TrainingResource
    from test_pipeline import ALL, _prepare, _resources

    root = tmp_path / "root"
    (runs := tmp_path / "runs.yaml").write_text(PIPELINE_RUNS)
    resources = {**_resources(root, tiny_model_path), "training": TrainingResource(runs_file=str(runs))}
    with dg.instance_for_test() as instance:
        base = _prepare(instance, root, tiny_model_path)
        assert dg.materialize(ALL, selection=["angle_scores", "curriculum"], partition_key=base, instance=instance, resources=resources).success
        instance.add_dynamic_partitions("training_runs", ["one-process", "two-processes"])
        metadata = {}
        for name in ("one-process", "two-processes"):
            result = dg.materialize(ALL, selection=["training_run"], partition_key=name, instance=instance, resources=resources)
            assert result.success
            (event,) = result.get_asset_materialization_events()
            metadata[name] = event.step_materialization_data.materialization.metadata

    one, two = metadata["one-process"], metadata["two-processes"]
    assert sorted(two) == sorted(one), "the same metadata as a one-process run"
    for key in ("sampler", "feedback", "epochs", "dagster/row_count"):
        assert two[key].value == one[key].value, key
    assert two["epochs"].value == 2 and two["dagster/row_count"].value == 8
    assert 0.0 <= two["final_rollout_accuracy"].value <= 1.0 and 0.0 <= two["final_held_out_accuracy"].value <= 1.0
    assert [Path(p).name for p in two["checkpoints"].value] == ["two-processes-epoch001", "two-processes-epoch002"]

    layout = Layout(root)
    with duckdb.connect(str(layout.catalog), read_only=True) as con:
        epochs = con.sql("SELECT run, epoch, mu, mu_next, accuracy FROM epochs ORDER BY run, epoch").fetchall()
        selected = con.sql("SELECT run, epoch, list(rank ORDER BY rank) FROM selections GROUP BY run, epoch ORDER BY run, epoch").fetchall()
        children = con.sql(f"SELECT fingerprint FROM checkpoints WHERE parent = '{base}'").fetchall()
    assert [(run, epoch) for run, epoch, *_ in epochs] == [("one-process", 0), ("one-process", 1), ("two-processes", 0), ("two-processes", 1)], "one row per epoch, one writer"
    assert all(mu is not None and mu_next is not None and accuracy is not None for *_, mu, mu_next, accuracy in epochs)
    assert [(run, epoch, len(ranks), len(set(ranks))) for run, epoch, ranks in selected] == [(run, e, 4, 4) for run in ("one-process", "two-processes") for e in (0, 1)]
    assert selected[0][2] == selected[2][2], "epoch 0: the same seed selects the same prompts on 1 and 2 processes"
    # The store keeps a checkpoint once by content: an epoch whose groups all earned the same
    # reward leaves the weights as they were, and its checkpoint is the previous one.
    saved = [*one["checkpoints"].value, *two["checkpoints"].value]
    assert len(saved) == 4, "one checkpoint per epoch"
    assert sorted(f for (f,) in children) == sorted({checkpoint_fingerprint(p) for p in saved}), "every saved checkpoint is registered"
    assert [p for p in root.rglob("*") if p.is_file() and layout.kind_of(p) is None] == []
    progress = [line for line in (layout.run_launch("two-processes") / "launch.log").read_text().splitlines() if "run two-processes epoch" in line]
    assert [line.split(":")[1].split()[-1] for line in progress] == ["1/2", "2/2"], "the launch log shows each epoch once, from the main process"
