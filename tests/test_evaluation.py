"""Greedy held-out evaluation: batching by length changes nothing but the speed."""

from __future__ import annotations

from pathlib import Path

from gainrl_ops.data.arithmetic import ArithmeticConfig, generate
from gainrl_ops.data.prompts import PromptConfig
from gainrl_ops.scoring.models import ModelSpec, load_model, load_tokenizer
from gainrl_ops.training.evaluation import greedy_accuracy, greedy_completions
from gainrl_ops.training.rewards import correctness_reward


def test_batched_completions_come_back_in_question_order_and_equal_one_at_a_time(tiny_model_path: Path) -> None:
    model, tokenizer = load_model(ModelSpec(str(tiny_model_path))), load_tokenizer(str(tiny_model_path))
    problems = generate(ArithmeticConfig(n_problems=12, seed=3, max_steps=3, max_digits=2))  # prompts of many lengths
    questions, prompt = [p.problem for p in problems], PromptConfig()
    side = tokenizer.padding_side
    batched = greedy_completions(model, tokenizer, questions, prompt, batch_size=5, max_new_tokens=24)
    alone = [greedy_completions(model, tokenizer, [q], prompt, batch_size=1, max_new_tokens=24)[0] for q in questions]
    assert batched == alone
    assert tokenizer.padding_side == side, "the tokenizer's padding side is restored"
    pairs = [(p.problem, p.answer) for p in problems]
    expected = sum(correctness_reward(c, p.answer) for c, p in zip(alone, problems)) / len(problems)
    assert greedy_accuracy(model, tokenizer, pairs, prompt, batch_size=4, max_new_tokens=24) == expected
