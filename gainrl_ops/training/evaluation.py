"""Greedy accuracy of a checkpoint on held-out problems."""

from __future__ import annotations

import polars as pl
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from gainrl_ops.core.progress import bar
from gainrl_ops.data.answers import extract_answer
from gainrl_ops.data.prompts import PromptConfig, render_text
from gainrl_ops.training.rewards import correctness_reward


@torch.no_grad()
def greedy_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: list[str],
    prompt: PromptConfig,
    batch_size: int = 128,
    max_new_tokens: int = 64,
) -> list[str]:
    """Greedy completions, in the order of `questions`.

    Prompts are tokenized once and batched by length, with left padding so every prompt ends
    at the same column: a batch carries few pads, and its completions, as alike as their
    prompts, tend to end together, so `generate` stops early more often.
    """
    texts = [render_text(tokenizer, q, prompt) for q in questions]
    ids = tokenizer(texts, add_special_tokens=tokenizer.chat_template is None)["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: list[str] = [""] * len(ids)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        for start in bar(None, "greedy decoding", unit="batch", iterable=range(0, len(order), batch_size)):
            rows = order[start : start + batch_size]
            enc = tokenizer.pad({"input_ids": [ids[i] for i in rows]}, padding=True, return_tensors="pt").to(model.device)
            generated = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens)
            for row, text in zip(rows, tokenizer.batch_decode(generated[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)):
                out[row] = text
    finally:
        tokenizer.padding_side = side
    return out


def greedy_accuracy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    problems: list[tuple[str, str]],
    prompt: PromptConfig,
    batch_size: int = 128,
    max_new_tokens: int = 64,
) -> float:
    """Fraction of (question, answer) pairs whose greedy completion has the right final answer."""
    completions = greedy_completions(model, tokenizer, [q for q, _ in problems], prompt, batch_size, max_new_tokens)
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
