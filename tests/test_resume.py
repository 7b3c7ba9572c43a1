"""A killed training run resumes from its last complete epoch and continues the same schedule."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from transformers import TrainerCallback

from gainrl_ops.core.layout import Layout
from gainrl_ops.data.arithmetic import ArithmeticConfig, generate
from gainrl_ops.data.prompts import PromptConfig
from gainrl_ops.training.config import TrainingRunConfig
from gainrl_ops.training.resume import STATE_FILE, find_resume_point, prepare_resume


class Killed(Exception):
    """Stands for SIGKILL: it leaves `train_run` at once, with nothing after it run."""


class KillDuring(TrainerCallback):
    """Raises after the first optimizer step of `epoch` (0-based), i.e. in the middle of it."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_step_end(self, args, state, control, **kwargs):
        if state.epoch > self.epoch:
            raise Killed(f"killed in epoch {self.epoch}")


class CountEpochs(TrainerCallback):
    def __init__(self) -> None:
        self.trained = 0

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.trained += 1


def _ranked() -> pl.DataFrame:
    problems = generate(ArithmeticConfig(n_problems=48, seed=5, max_steps=1, max_digits=1))
    return pl.DataFrame({
        "id": [f"q{i:02d}" for i in range(48)], "problem": [p.problem for p in problems], "answer": [p.answer for p in problems],
        # The base checkpoint's pass rates, which the learnability sampler starts from; a third unknown.
        "pass_rate": [None if i % 3 == 0 else (i % 5) / 4 for i in range(48)],
    })


@pytest.mark.parametrize("sampler", ["gainrl", "learnability", "pool"])
def test_a_killed_run_resumes_and_selects_what_an_uninterrupted_run_selects(sampler: str, tiny_model_path: Path, tmp_path: Path) -> None:
    """The reward-based samplers (learnability, pool) rebuild their per-prompt rewards from the
    rollout records of the epochs done; GAIN-RL reloads mu and its history."""
    from gainrl_ops.training.trainer import train_run

    run = TrainingRunConfig(
        name="resumable", sampler=sampler, seed=3, epochs=4, subset_size=8,
        grpo={"num_generations": 4, "per_device_train_batch_size": 16, "max_completion_length": 12, "learning_rate": 1e-3},
    )
    ranked, prompt = _ranked(), PromptConfig()
    straight = train_run(run, str(tiny_model_path), ranked, prompt, Layout(tmp_path / "straight"), lambda *_: "")

    layout = Layout(tmp_path / "killed")
    with pytest.raises(Killed):
        train_run(run, str(tiny_model_path), ranked, prompt, layout, lambda *_: "", callbacks=[KillDuring(2)])
    assert not layout.epochs(run.name).exists(), "a killed run has written no tables"
    point = find_resume_point(layout.run_resume(run.name), _key(layout, run))
    assert point is not None and point.epochs_done == 2
    # A save cut short after the point (no state file) must not be taken for one.
    (partial := layout.run_resume(run.name) / "checkpoint-999").mkdir()
    (partial / "model.safetensors").write_bytes(b"half a file")

    counter = CountEpochs()
    resumed = train_run(run, str(tiny_model_path), ranked, prompt, layout, lambda *_: "", callbacks=[counter])
    assert counter.trained == 2, "epochs 0 and 1 were not trained again"
    assert resumed.selections.equals(straight.selections)
    same = ["epoch", "mu", "mu_next", "accuracy", "feedback_angle"]
    assert resumed.epochs.select(same).equals(straight.epochs.select(same), null_equal=True), "model, optimizer and RNG states came back too"
    assert resumed.rollouts.equals(straight.rollouts), "the same rollouts, so the samplers observed the same rewards"
    if sampler != "gainrl":
        # Not a trivial equality: the draws depend on the rewards observed before the kill.
        assert straight.selections.filter(pl.col("epoch") == 3)["id"].to_list() != _draws_without_rewards(run, ranked)
    assert not layout.run_resume(run.name).exists(), "a finished run leaves no resume points"


def _draws_without_rewards(run: TrainingRunConfig, ranked: pl.DataFrame) -> list[str]:
    """Epoch 3's prompts of the same sampler had it never observed a reward."""
    alone = run.make_sampler(ranked.height, ranked["pass_rate"].fill_null(float("nan")).to_numpy())
    for epoch in range(3):
        alone.select(epoch)
    return ranked["id"].gather(alone.select(3)).to_list()


def _key(layout: Layout, run: TrainingRunConfig) -> str:
    """The key the killed run wrote (read back, so the test does not restate how it is made)."""
    folders = sorted(layout.run_resume(run.name).glob(f"checkpoint-*/{STATE_FILE}"))
    return json.loads(folders[-1].read_text())["key"]


def test_only_complete_points_made_with_the_same_key_count(tmp_path: Path) -> None:
    resume = tmp_path / "resume"
    for step, key in ((2, "a"), (4, "a")):
        (resume / f"checkpoint-{step}").mkdir(parents=True)
        (resume / f"checkpoint-{step}" / STATE_FILE).write_text(json.dumps({"key": key, "epochs": [{}] * (step // 2)}))
    (resume / "checkpoint-6").mkdir()  # killed during the save
    (resume / "checkpoint-8").mkdir()
    (resume / "checkpoint-8" / STATE_FILE).write_text('{"key": "a", "epo')  # killed during the write: never happens atomically, still ignored

    point = prepare_resume(resume, "a")
    assert point is not None and point.folder.name == "checkpoint-4" and point.epochs_done == 2
    assert sorted(p.name for p in resume.iterdir()) == ["checkpoint-2", "checkpoint-4"], "saves cut short are removed"
    assert prepare_resume(resume, "other settings") is None
    assert not resume.exists(), "points made with other settings are removed: the run starts over"
