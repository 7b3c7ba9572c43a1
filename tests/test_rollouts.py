"""The `rollouts` records: each epoch's group rewards per prompt, as the trainer computed them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from exact import EXACT
from transformers import TrainerCallback

from gainrl_ops.core.layout import Layout
from gainrl_ops.curriculum.catalog import query, refresh_catalog
from gainrl_ops.data.arithmetic import ArithmeticConfig, generate
from gainrl_ops.data.prompts import PromptConfig
from gainrl_ops.scoring.checkpoints import checkpoint_fingerprint
from gainrl_ops.training import trainer
from gainrl_ops.training.config import TrainingRunConfig


class EpochEnds(TrainerCallback):
    """How many rewards the reward function had returned when each epoch ended."""

    def __init__(self, captured: list) -> None:
        self.captured, self.ends = captured, []

    def on_epoch_end(self, args, state, control, **kwargs):
        self.ends.append(len(self.captured))


def test_the_rollouts_view_holds_the_rewards_the_trainer_computed(
    tiny_model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    captured: list[tuple[str, float]] = []
    call = trainer.CorrectnessReward.__call__

    def capture(self, prompts, completions, answer, id, **kwargs):
        rewards = call(self, prompts, completions, answer, id, **kwargs)
        captured.extend(zip(id, rewards))
        return rewards

    monkeypatch.setattr(trainer.CorrectnessReward, "__call__", capture)
    problems = generate(ArithmeticConfig(n_problems=24, seed=2, max_steps=1, max_digits=1))
    ranked = pl.DataFrame({"id": [f"r{i:02d}" for i in range(24)], "problem": [p.problem for p in problems], "answer": [p.answer for p in problems]})
    run = TrainingRunConfig(
        name="recorded", sampler="uniform", seed=1, epochs=2, subset_size=8,
        grpo={"num_generations": 4, "per_device_train_batch_size": 16, "max_completion_length": 12, "learning_rate": 1e-3},
    )
    saved = tmp_path / "saved"

    def save(model, tokenizer, epoch):
        model.save_pretrained(path := saved / f"epoch{epoch}")
        return str(path)

    root, base = tmp_path / "root", checkpoint_fingerprint(str(tiny_model_path))
    ends = EpochEnds(captured)
    result = trainer.train_run(run, str(tiny_model_path), ranked, PromptConfig(), Layout(root), save, callbacks=[ends], base_checkpoint=base)
    refresh_catalog(root)
    view = query(root, "SELECT * FROM rollouts ORDER BY epoch, id")

    expected = []
    for epoch, (start, end) in enumerate(zip([0, *ends.ends], ends.ends)):
        frame = pl.DataFrame(captured[start:end], schema=["id", "reward"], orient="row")
        for (prompt_id,), group in frame.sort("id").group_by("id", maintain_order=True):
            rewards = group["reward"].to_numpy()
            expected.append((epoch, prompt_id, len(rewards), rewards.mean(), rewards.std(ddof=1), bool(rewards.min() == rewards.max())))
    assert len(captured) == 2 * 8 * 4, "every completion of both epochs was rewarded once"
    assert [(r[0], r[1], r[2], r[5]) for r in expected] == list(zip(*(view[c].to_list() for c in ("epoch", "id", "n", "all_equal"))))
    assert view["mean_reward"].to_list() == pytest.approx([r[3] for r in expected], abs=EXACT)
    assert view["reward_std"].to_list() == pytest.approx([r[4] for r in expected], abs=EXACT, nan_ok=True)
    assert set(view["run"].to_list()) == {"recorded"}
    assert view["checkpoint"].to_list() == [base] * 8 + [checkpoint_fingerprint(str(saved / "epoch0"))] * 8, "the checkpoint each epoch started from"

    selected = result.selections.group_by("epoch").agg(pl.col("id").sort()).sort("epoch")["id"].to_list()
    assert selected == [view.filter(pl.col("epoch") == e)["id"].to_list() for e in (0, 1)], "one row per prompt trained on"
    accuracy = view.group_by("epoch").agg(((pl.col("n") * pl.col("mean_reward")).sum() / pl.col("n").sum()).alias("accuracy")).sort("epoch")
    assert accuracy["accuracy"].to_list() == pytest.approx(result.epochs["accuracy"].to_list(), abs=EXACT), "the epoch accuracy is their mean"
    assert np.isfinite(view["reward_std"].to_numpy()).all()
