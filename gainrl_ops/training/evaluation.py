"""Greedy accuracy of a checkpoint on held-out problems."""

from __future__ import annotations

import polars as pl
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from gainrl_ops.data.prompts import PromptConfig, render_text
from gainrl_ops.training.rewards import correctness_reward, extract_answer


@torch.no_grad()
def greedy_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: list[str],
    prompt: PromptConfig,
    batch_size: int = 64,
    max_new_tokens: int = 64,
) -> list[str]:
    """Greedy completions, batched with left padding so every prompt ends at the same column."""
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    out: list[str] = []
    try:
        for start in tqdm(range(0, len(questions), batch_size), desc="greedy decoding", unit="batch", leave=False):
            texts = [render_text(tokenizer, q, prompt) for q in questions[start : start + batch_size]]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=tokenizer.chat_template is None)
            enc = enc.to(model.device)
            generated = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens)
            out += tokenizer.batch_decode(generated[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return out


def greedy_accuracy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    problems: list[tuple[str, str]],
    prompt: PromptConfig,
    batch_size: int = 64,
) -> float:
    """Fraction of (question, answer) pairs whose greedy completion has the right final answer."""
    completions = greedy_completions(model, tokenizer, [q for q, _ in problems], prompt, batch_size)
    return sum(correctness_reward(c, a) for c, (_, a) in zip(completions, problems)) / len(problems)


def evaluate_checkpoint(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    problems: pl.DataFrame,
    prompt: PromptConfig,
    checkpoint: str,
    max_new_tokens: int = 64,
) -> pl.DataFrame:
    """One row per held-out problem (columns id, problem, answer): the greedy completion,
    its extracted answer and whether it is correct."""
    completions = greedy_completions(model, tokenizer, problems["problem"].to_list(), prompt, max_new_tokens=max_new_tokens)
    return problems.select("id", "answer").with_columns(
        checkpoint=pl.lit(checkpoint),
        completion=pl.Series(completions, dtype=pl.String),
        predicted=pl.Series([extract_answer(c) for c in completions], dtype=pl.String),
        correct=pl.Series([bool(correctness_reward(c, a)) for c, a in zip(completions, problems["answer"].to_list())]),
    )
