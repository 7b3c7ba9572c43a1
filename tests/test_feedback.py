"""GAIN-RL's feedback angle: the rollouts' mean pairwise cosine, and the controller that uses it."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import polars as pl
import pytest
import torch
from exact import EXACT, float64_model

from gainrl_ops.core.layout import Layout
from gainrl_ops.data.arithmetic import ArithmeticConfig, generate
from gainrl_ops.data.prompts import PromptConfig
from gainrl_ops.scoring.capture import last_mlp_input
from gainrl_ops.scoring.models import ModelSpec, load_model, load_tokenizer
from gainrl_ops.training.config import TrainingRunConfig
from gainrl_ops.training.feedback import mean_pairwise_cosine, rollout_angles
from gainrl_ops.training.sampling import mu_adjustment

TINY_GRPO = {"num_generations": 4, "per_device_train_batch_size": 16, "max_completion_length": 16, "learning_rate": 1e-3}


def test_mean_pairwise_cosine_by_hand() -> None:
    garbage = [7.0, -3.0, 2.0]
    hidden = torch.tensor([
        [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [3.0, 3.0, 0.0], garbage],  # pairs: 0, 1/sqrt2, 1/sqrt2
        [[1.0, 0.0, 0.0], garbage, [-4.0, 0.0, 0.0], garbage],  # one pair, opposite: -1 (a pad in between)
        [[0.0, 0.0, 1.0], garbage, garbage, garbage],  # one token: no pair
    ])
    mask = torch.tensor([[True, True, True, False], [True, False, True, False], [True, False, False, False]])
    got = mean_pairwise_cosine(hidden, mask)
    assert got[0].item() == pytest.approx(math.sqrt(2) / 3, abs=1e-6)
    assert got[1].item() == pytest.approx(-1.0, abs=1e-6)
    assert math.isnan(got[2].item())


@pytest.mark.numerics
def test_rollout_angles_equal_the_cosine_matrix_of_each_unpadded_sequence(tiny_model_path: Path) -> None:
    # float64: the packed, batched prefill and the one-sequence cosine matrix are the same maths.
    model, tokenizer = float64_model(load_model(ModelSpec(str(tiny_model_path), dtype="float64"))), load_tokenizer(str(tiny_model_path))
    pad = tokenizer.pad_token_id
    prompts = [tokenizer(t)["input_ids"] for t in ("Ava has 3 apples.", "Ben has 12 marbles and buys 4", "Jo")]
    completions = [tokenizer(t)["input_ids"] for t in ("5 #### 5", "16", "1 + 2 = 3 #### 3")]
    # TRL's layout: prompts padded on the left, completions on the right.
    p_width, c_width = max(map(len, prompts)), max(map(len, completions))
    prompt_ids = torch.tensor([[pad] * (p_width - len(p)) + p for p in prompts])
    prompt_mask = torch.tensor([[0] * (p_width - len(p)) + [1] * len(p) for p in prompts])
    completion_ids = torch.tensor([c + [pad] * (c_width - len(c)) for c in completions])
    completion_mask = torch.tensor([[1] * len(c) + [0] * (c_width - len(c)) for c in completions])

    got = rollout_angles(model, prompt_ids, prompt_mask, completion_ids, completion_mask, batch_size=2)
    for row, (p, c) in enumerate(zip(prompts, completions)):
        ids = torch.tensor([p + c])
        with torch.no_grad():
            unit = torch.nn.functional.normalize(last_mlp_input(model, ids, torch.ones_like(ids))[0], dim=-1)
        cosines = unit @ unit.T
        n = len(p) + len(c)
        expected = (cosines.sum() - cosines.diagonal().sum()) / (n * (n - 1))
        assert got[row].item() == pytest.approx(expected.item(), abs=EXACT)
    assert got.min() > -1 and got.max() < 1


def _ranked(n: int) -> pl.DataFrame:
    problems = generate(ArithmeticConfig(n_problems=n, seed=11, max_steps=1, max_digits=1))
    return pl.DataFrame({"id": [f"p{i:03d}" for i in range(n)], "problem": [p.problem for p in problems], "answer": [p.answer for p in problems]})


def _train(run: TrainingRunConfig, model_path: Path, root: Path) -> pl.DataFrame:
    from gainrl_ops.training.trainer import train_run

    return train_run(run, str(model_path), _ranked(48), PromptConfig(), Layout(root), lambda *_: "").epochs


def test_a_real_run_feeds_the_controller_an_angle_that_does_not_saturate_it(
    tiny_model_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    run = TrainingRunConfig(name="angles", epochs=3, subset_size=8, grpo=TINY_GRPO)
    with caplog.at_level(logging.INFO, logger="gainrl_ops.training.trainer"):
        epochs = _train(run, tiny_model_path, tmp_path)
    angles = epochs["feedback_angle"].to_list()
    assert all(-1 < a < 1 for a in angles) and epochs["feedback_seconds"].min() > 0
    config = run.make_sampler(48).config
    # With accuracy at the threshold beta = 0.5 only the angle term moves mu: it must neither
    # pin the adjustment at a bound nor be the same every epoch.
    adjustments = [mu_adjustment(config, 0.5, a) for a in angles]
    assert all(config.adj_min < adj < config.adj_max for adj in adjustments), adjustments
    assert max(adjustments) - min(adjustments) > 1e-3 * config.n, adjustments
    assert all(abs(math.tanh(config.alpha * a)) < 0.99 for a in angles)
    # The controller got this angle (mu stays within the 48 ranks).
    for row in epochs.iter_rows(named=True):
        step = mu_adjustment(config, row["accuracy"], row["feedback_angle"])
        assert row["mu_next"] == pytest.approx(min(max(row["mu"] + step, 0.0), 47.0))
    assert all(s > 1 for s in epochs["prompt_score"].to_list()), "the ranking score is on another scale, kept apart"
    # One log line per epoch instead of TRL's per-step dict.
    assert len([r for r in caplog.records if " epoch " in r.getMessage()]) == 3
    assert "'loss'" not in capsys.readouterr().out


def test_prompt_feedback_keeps_the_old_controller_input(tiny_model_path: Path, tmp_path: Path) -> None:
    run = TrainingRunConfig(name="prompt-fb", epochs=2, subset_size=8, feedback="prompt", grpo=TINY_GRPO)
    epochs = _train(run, tiny_model_path, tmp_path)
    config = run.make_sampler(48).config
    for row in epochs.iter_rows(named=True):
        step = mu_adjustment(config, row["accuracy"], row["prompt_score"])
        assert row["feedback"] == "prompt" and -1 < row["feedback_angle"] < 1
        assert row["mu_next"] == pytest.approx(min(max(row["mu"] + step, 0.0), 47.0))


def test_uniform_measures_no_feedback(tiny_model_path: Path, tmp_path: Path) -> None:
    epochs = _train(TrainingRunConfig(name="uni", sampler="uniform", epochs=1, subset_size=8, grpo=TINY_GRPO), tiny_model_path, tmp_path)
    assert epochs["feedback_angle"].is_nan().all() and epochs["prompt_score"].is_nan().all()
    assert epochs["feedback_seconds"].to_list() == [0.0]
