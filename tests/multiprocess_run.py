"""One training run on every process of a `torchrun`/`accelerate launch` job, for
tests/test_multiprocess.py: `python multiprocess_run.py OUT MODEL SAMPLER EPOCHS [KILL_IN_EPOCH]`.
The prompts are in the order the pipeline gives SAMPLER ("length", "difficulty": shortest or
easiest first), else by id.

Each rank writes what it saw after every epoch to OUT/trace/rank<k>.jsonl: its own rollout
rewards, the sampler's mu before and after the update, the feedback the sampler got, and the
epoch's selection. The rewards and the sampler are observed by wrapping two library methods
in this process only; the run itself is `train_run`, unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import polars as pl
from transformers import TrainerCallback

from gainrl_ops.core.layout import Layout
from gainrl_ops.data.arithmetic import ArithmeticConfig, generate
from gainrl_ops.data.prompts import PromptConfig
from gainrl_ops.scoring.models import load_tokenizer
from gainrl_ops.training import trainer
from gainrl_ops.training.config import TrainingRunConfig

SAMPLERS: list = []
REWARDS: list[list[float]] = []


def _observe() -> None:
    make_sampler, take = TrainingRunConfig.make_sampler, trainer.CorrectnessReward.take

    def made(self, n_prompts, pass_rates=None):
        SAMPLERS.append(sampler := make_sampler(self, n_prompts, pass_rates))
        return sampler

    def taken(self):
        ids, rewards = take(self)
        REWARDS.append(rewards)
        return ids, rewards

    TrainingRunConfig.make_sampler, trainer.CorrectnessReward.take = made, taken


class Trace(TrainerCallback):
    """Runs after the library's own epoch-end callbacks, so the sampler has had its update."""

    def __init__(self, path: Path):
        self.path = path

    def on_epoch_end(self, args, state, control, **kwargs):
        sampler = SAMPLERS[-1]
        history = sampler.state_dict()["schedule"]["history"] if hasattr(sampler, "config") else sampler.history
        last = history[-1]
        epoch = round(state.epoch) - 1
        rewards = REWARDS[-1]
        with self.path.open("a") as out:
            out.write(json.dumps({
                "epoch": epoch, "mu_before": last.get("mu_before"), "mu": sampler.mu, "accuracy": last["accuracy"],
                "angle": last["angle"], "reward_sum": sum(rewards), "reward_count": len(rewards),
                "selection": [int(r) for r in sampler.select(epoch)],
            }) + "\n")


class KillDuring(TrainerCallback):
    """Stands for SIGKILL in the middle of `epoch` (0-based), on every rank."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_step_end(self, args, state, control, **kwargs):
        if state.epoch > self.epoch:
            raise SystemExit(f"killed in epoch {self.epoch}")


def main(out: Path, model: str, sampler: str, epochs: int, kill: int | None) -> None:
    logging.basicConfig(level=logging.INFO)
    _observe()
    problems = generate(ArithmeticConfig(n_problems=48, seed=5, max_steps=1, max_digits=1))
    ranked = pl.DataFrame({
        "id": [f"q{i:02d}" for i in range(48)], "problem": [p.problem for p in problems], "answer": [p.answer for p in problems],
        "difficulty": [p.difficulty for p in problems], "question_tokens": [len(t) for t in load_tokenizer(model)([p.problem for p in problems])["input_ids"]],
    })
    # The order the pipeline gives these samplers (`curriculum.ranking.ordered_prompts`): easiest or shortest first, ties by id.
    order = {"length": ["question_tokens", "id"], "difficulty": ["difficulty", "id"]}.get(sampler, ["id"])
    ranked = ranked.sort(order).select("id", "problem", "answer")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    run = TrainingRunConfig(
        name=f"mp-{sampler}", sampler=sampler, seed=3, beta=0.0, epochs=epochs, subset_size=8,
        grpo={"num_generations": 4, "per_device_train_batch_size": 8, "max_completion_length": 12, "learning_rate": 1e-3},
        num_processes=world,
    )
    (trace := out / "trace").mkdir(parents=True, exist_ok=True)
    callbacks = [Trace(trace / f"rank{os.environ.get('RANK', '0')}.jsonl")] + ([KillDuring(kill)] if kill is not None else [])
    saved = out / "store"

    def save(model, tokenizer, epoch):
        path = saved / f"epoch{epoch + 1}-rank{os.environ.get('RANK', '0')}"
        model.save_pretrained(path)
        return str(path)

    trainer.train_run(run, model, ranked, PromptConfig(), Layout(out / "home"), save, callbacks=callbacks)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]) if len(sys.argv) > 5 else None)
